#!/usr/bin/env bash
# The test command: bootstraps .venv, then runs the whole pytest suite.
# Two workers of one thread each (pytest-xdist): most tests are fairseq-train or demo
# subprocesses on tiny models, which a second thread barely speeds up, so two at once
# use both cores better. Each file stays on one worker, so its fixtures are built once.
# TEST_WORKERS=0 runs everything in this process (pytest's own default).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
workers=${TEST_WORKERS:-2}
if [ "$workers" = 0 ]; then
    exec .venv/bin/python -m pytest tests "$@"
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
exec .venv/bin/python -m pytest tests -n "$workers" --dist loadfile "$@"
