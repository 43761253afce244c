#!/usr/bin/env bash
# The README's first command: install, then run pairgen on the embedded
# default (procedural apartments, no dataset download).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${PAIRGEN_VENV:-.venv}
echo "demo: the synthetic scenes pairgen builds by default" >&2
"$VENV/bin/pairgen" scenes --scenes synthetic --triangles
