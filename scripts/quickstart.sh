#!/usr/bin/env bash
# The README's first command: set this Debian 12 machine up and run the main job
# (control, an enforcer enrolled with it, the example application). `stop` stops it all.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m scripts.quickstart "$@"
