#!/usr/bin/env bash
# The main job end to end: install, then build contact sheets of the sample images with dtq.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
