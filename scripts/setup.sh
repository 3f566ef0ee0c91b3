#!/usr/bin/env bash
# Create .venv with dtq and its test tools installed (idempotent; works on a fresh machine).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
log=$(mktemp)
if ! { .venv/bin/python -m pip install --quiet --upgrade pip setuptools wheel \
       && .venv/bin/python -m pip install --quiet -e ".[test]"; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup: installing dtq into .venv failed (output above)" >&2
    exit 1
fi
rm -f "$log"
