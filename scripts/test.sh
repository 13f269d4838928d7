#!/usr/bin/env bash
# The whole test suite: lint, types, unit tests and the behaviour tests against a real Docker
# engine, registry and processes that the suite starts (and stops) itself.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check enforcer control tests bench scripts
.venv/bin/mypy
.venv/bin/lint-imports
# two workers; the files that share a fixed part run on the same one (tests/support/workers.py)
exec .venv/bin/python -m pytest -p no:cacheprovider -q --durations=25 -n 2 -p tests.support.workers "$@"
