#!/usr/bin/env bash
# Create or update .venv with everything the demo, tests and benches need.
# Safe to rerun: a stamp file skips the installs once they are done.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip"
stamp=".venv/.bootstrap-$(cat setup.py scripts/bootstrap.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ]; then
    exit 0
fi
echo "bootstrap: installing into .venv (first run: about 10 minutes)" >&2
$PIP install -q --upgrade pip wheel setuptools
# torch first and pinned: the local CPU wheel; anything else pulls CUDA packages
$PIP install -q torch==2.13.0
# fairseq-fixed compiles once (about 6 minutes), then pip reuses its cached wheel
$PIP install -q fairseq-fixed==0.12.3.1
# fairseq pulls a torchaudio built for another torch; it only serves speech tasks
$PIP uninstall -y -q torchaudio || true
$PIP install -q numpy sentencepiece submitit tqdm pytest scikit-learn
# --no-deps: the dependencies are in place, and resolving them again would
# bring torchaudio back
$PIP install -q --no-deps -e .
rm -f .venv/.bootstrap-*
touch "$stamp"
