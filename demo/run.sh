#!/usr/bin/env bash
# The main job: bootstrap .venv, then the SST-2 sparse-distillation demo with defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec bash demo/sst2.sh "$@"
