#!/usr/bin/env bash
# Install (idempotent), lint, and run the whole test suite. CI calls this through .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check dtq plugins tests scripts
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
