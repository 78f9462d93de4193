#!/usr/bin/env bash
# The GPU checks, on a CUDA machine whose python3 already has torch, transformers, tokenizers,
# scikit-learn and pytest but no network (a lent device): installs fairseq and the plugin's other
# needs from files carried in .whl/, runs tests/test_gpu.py (GPU_TESTS=-k expression, default all),
# then the GPU rows of bench/teacher_logits_bench.py and bench/pruned_transformers.py. Output: $OUT.
# GPU_STEPS picks among tests, teacher and pruned (default all three). It installs into that
# python3's own environment and writes console scripts beside it: for a throwaway machine only.
#
# Prepare .whl/ here first (about 57 MB): bash scripts/gpu_check_prepare.sh
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu_check}; mkdir -p "$OUT"
PY=$(command -v python3); BIN=$(dirname "$PY")
SP=$($PY -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
nvidia-smi -L; $PY -c "import torch, transformers; print(torch.__version__, transformers.__version__, torch.cuda.get_device_name())"
t0=$(date +%s)
$PY -m pip install -q --no-index --no-deps --no-build-isolation .whl/*.whl || exit 3
tar xzf .whl/fairseq.tgz -C "$SP" && cp -r .whl/pure/antlr4 "$SP"/ || exit 3
for c in train preprocess hydra_train; do
  printf '#!%s\nimport sys\nfrom fairseq_cli.%s import cli_main\nsys.exit(cli_main())\n' "$PY" "$c" > "$BIN/fairseq-${c/_/-}"
  chmod +x "$BIN/fairseq-${c/_/-}"
done
# the plugin from this checkout (no editable install: pip would fetch build tools)
echo "$PWD" > "$SP/fairseq_distill_checkout.pth"
grep -o '"[a-z-]* *= *[a-z_.]*:[a-z_]*"' setup.py | tr -d '" ' | while IFS='=' read -r name target; do
  printf '#!%s\nimport sys\nfrom %s import %s\nsys.exit(%s())\n' "$PY" "${target%%:*}" "${target##*:}" "${target##*:}" > "$BIN/$name"
  chmod +x "$BIN/$name"
done
# tests' weights: all-MiniLM-L6-v2's shape and tokenizer, random values (the tests compare CPU and GPU)
mkdir -p .cache/weights/all-MiniLM-L6-v2
$PY - <<'PYEOF' || exit 3
import os, torch
from transformers import BertConfig, BertModel
torch.manual_seed(0)
BertModel(BertConfig.from_pretrained(".whl/minilm")).save_pretrained(".cache/weights/all-MiniLM-L6-v2")
# the demo teacher (fp16 in transit) back to fp32, its paths pointed here
s = torch.load(".whl/work/teacher/ckpt/checkpoint_best.pt.half", map_location="cpu", weights_only=False)
seen = {}
s["model"] = {k: seen.setdefault((v.data_ptr(), v.shape), v.float()) if v.is_floating_point() else v
              for k, v in s["model"].items()}
s["cfg"]["task"]["data"] = os.path.abspath(".whl/work/teacher/data-bin")
s["cfg"]["bpe"]["wordpiece_vocab"] = os.path.abspath(".whl/minilm/tokenizer.json")
torch.save(s, ".whl/work/teacher/ckpt/checkpoint_best.pt")
PYEOF
cp .whl/minilm/* .cache/weights/all-MiniLM-L6-v2/
echo "install: $(( $(date +%s) - t0 )) s"
export DISTILL_SHARED_DATA=$PWD/.whl/data
steps=" ${GPU_STEPS:-tests teacher pruned} "
[[ $steps == *" tests "* ]] && timeout 300 $PY -m pytest tests/test_gpu.py -k "${GPU_TESTS:-cuda}" -v -ra -p no:cacheprovider --durations=10 2>&1 | tee $OUT/gpu_tests.log
echo "tests done: $(( $(date +%s) - t0 )) s"
[[ $steps == *" teacher "* ]] && timeout 120 $PY bench/teacher_logits_bench.py --work .whl/work --examples ${TEACHER_EXAMPLES:-20000} --device cuda \
  --output $OUT/teacher_logits_bench-cuda.json 2>&1 | tail -15 | tee $OUT/teacher_bench.log
[[ $steps == *" pruned "* ]] && timeout 150 $PY bench/pruned_transformers.py --work .whl/work --data .whl/data/glue/SST-2 --device cuda --seconds 1 --steps 5 \
  --output $OUT/pruned_transformers-cuda.json 2>&1 | grep -v Warning | tail -20 | tee $OUT/pruned_bench.log
echo "all: $(( $(date +%s) - t0 )) s"
