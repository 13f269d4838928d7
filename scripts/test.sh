#!/usr/bin/env bash
# The whole test suite: lint, types, unit tests and the behaviour tests against a real Docker
# engine, registry and processes that the suite starts (and stops) itself.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check enforcer control tests bench scripts
.venv/bin/mypy
.venv/bin/lint-imports
exec .venv/bin/pytest -p no:cacheprovider -q --durations=25 "$@"
