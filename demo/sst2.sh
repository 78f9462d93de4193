#!/usr/bin/env bash
# Sparse distillation on SST-2, every step a plain command (Ye et al., NAACL 2022).
#
#   bash demo/sst2.sh            # defaults: a few minutes on 2 CPU cores
#   bash demo/sst2.sh --full     # the paper's DAN (1000-d), longer training
#
# Steps already done are skipped on rerun; fairseq-train resumes from its
# last checkpoint. Environment: DATA (GLUE SST-2 dir), WORK (output dir).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DATA=${DATA:-$REPO/../shared/data/glue/SST-2}
WORK=${WORK:-$REPO/demo/work/sst2}
FULL=0
[ "${1:-}" = "--full" ] && FULL=1
export PATH="$REPO/.venv/bin:$PATH"
mkdir -p "$WORK"
cd "$WORK"
step() { echo; echo "== $*"; }

if [ $FULL = 1 ]; then
    ARCH=dan_paper; EPOCHS=20; MAX_FEATURES=1000000; BATCH=256; LR=5e-4
else
    ARCH=feature_based_linear_model; EPOCHS=6; MAX_FEATURES=1000000; BATCH=64; LR=1e-3
fi

step "1. raw text and labels (header dropped; one example per line)"
for split in train dev; do
    if [ ! -s "$split.label" ]; then
        tail -n +2 "$DATA/$split.tsv" | cut -f1 > "$split.txt"
        tail -n +2 "$DATA/$split.tsv" | cut -f2 > "$split.label"
    fi
    wc -l "$split.txt"
done

step "2. teacher logits for the transfer set (train) and dev"
# STAND-IN teacher (tf-idf logistic regression) until the transformer teacher lands
[ -s teacher/train.npy ] || { mkdir -p teacher; python "$REPO/demo/stand_in_teacher.py" \
    --train-text train.txt --train-labels train.label --input train.txt dev.txt \
    --output teacher/train.npy teacher/dev.npy --eval-text dev.txt --eval-labels dev.label \
    --report teacher/report.json; }

step "3. n-gram vocabulary (1-4-grams, top $MAX_FEATURES)"
[ -s vocab.txt ] || distill-ngram-dict --input train.txt --output vocab.txt \
    --ngram-range 1 4 --max-features $MAX_FEATURES --workers 2
head -3 vocab.txt

step "4. n-gram features, one line per example"
for split in train dev; do
    [ -s $split.ngrams ] || distill-extract-ngrams --vocab vocab.txt --input $split.txt \
        --output $split.ngrams --workers 2
done

step "5. binarize (fairseq-preprocess)"
if [ ! -s data-bin/label/valid.idx ]; then
    rm -rf data-bin
    fairseq-preprocess --only-source --srcdict vocab.txt --trainpref train.ngrams \
        --validpref dev.ngrams --destdir data-bin/input0 --workers 2
    printf '0 0\n1 0\n' > label-dict.txt   # fixed class order: column 0 is "0"
    fairseq-preprocess --only-source --srcdict label-dict.txt --trainpref train.label \
        --validpref dev.label --destdir data-bin/label --workers 2
    cp vocab.txt.json data-bin/input0/ngrams.json
    mkdir -p data-bin/distill
    cp teacher/train.npy teacher/train.json data-bin/distill/
    cp teacher/dev.npy data-bin/distill/valid.npy
    cp teacher/dev.json data-bin/distill/valid.json
fi

step "6. distill into the DAN (fairseq-train, mixed_adam)"
fairseq-train data-bin --user-dir "$REPO/user_dir" \
    --task feature_based_sentence_prediction --distillation-target --num-classes 2 \
    --arch $ARCH --criterion distillation --distillation-alpha 1.0 \
    --optimizer mixed_adam --adam-betas '(0.9, 0.98)' --adam-eps 1e-6 --weight-decay 0.01 \
    --lr $LR --lr-scheduler polynomial_decay --warmup-updates 200 \
    --total-num-update $(( (67349 / BATCH + 1) * EPOCHS )) \
    --batch-size $BATCH --max-epoch $EPOCHS --feature-dropout 0.1 \
    --best-checkpoint-metric accuracy --maximize-best-checkpoint-metric \
    --save-dir checkpoints --no-epoch-checkpoints --log-format simple --log-interval 200 \
    2>&1 | tee train.log | grep -E "valid on|done training" || true
[ -s checkpoints/checkpoint_best.pt ] || { echo "training failed: see $WORK/train.log" >&2; exit 1; }

step "7. evaluate from raw text (distill-predict on dev.tsv)"
distill-predict --checkpoint checkpoints/checkpoint_best.pt --data-bin data-bin \
    --input "$DATA/dev.tsv" --header --label-column 1 --output dev.predictions.tsv --cpu \
    | tail -1 > student.json

step "8. report"
python - "$WORK" <<'PY'
import json, sys, torch
work = sys.argv[1]
teacher = json.load(open(f"{work}/teacher/report.json"))
student = json.load(open(f"{work}/student.json"))
state = torch.load(f"{work}/checkpoints/checkpoint_best.pt", map_location="cpu", weights_only=False)
student["parameters"] = sum(v.numel() for v in state["model"].values())
report = {"task": "SST-2 dev", "teacher (stand-in)": teacher, "student (DAN)": student}
json.dump(report, open(f"{work}/report.json", "w"), indent=2)
print(f"{'model':<22}{'dev acc':>9}{'params':>12}{'sent/s':>12}")
for name, r in (("teacher (stand-in)", teacher), ("student (DAN)", student)):
    print(f"{name:<22}{r['accuracy']:>9.2f}{r['parameters']:>12,}{r['sentences_per_second']:>12,.0f}")
print(f"report: {work}/report.json")
PY
