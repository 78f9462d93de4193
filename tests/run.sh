#!/usr/bin/env bash
# The test command: bootstraps .venv, then runs the whole pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest tests "$@"
