#!/usr/bin/env bash
# The README's second command: install (if needed), then run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${PAIRGEN_VENV:-.venv}
exec "$VENV/bin/python" -m pytest "$@"
