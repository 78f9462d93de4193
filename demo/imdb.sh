#!/usr/bin/env bash
# Sparse distillation on IMDB, the paper's worked example (Ye et al., NAACL 2022): a BERT
# teacher (all-MiniLM-L6-v2 fine-tuned with fairseq) labels IMDB train and unlabelled
# reviews; a DAN over 1-4-gram features learns from its logits (KD), then from the gold
# train labels (KD+FT). Scored on the 25,000 test reviews, raw text to label, against
# fastText and TF-IDF logistic regression trained on the same gold labels.
#
#   bash demo/imdb.sh            # defaults: about 2 hours on 2 CPU cores (2 h 10 min measured)
#   bash demo/imdb.sh --full     # teacher on all of train, window 512, all 50k unlabelled reviews: hours on CPU
#   bash demo/imdb.sh --smoke    # the same steps on a few hundred reviews (the tests' check)
#
# Reviews are longer than the teacher's window (median 239 WordPieces): the teacher reads
# the head and the tail of each (Sun et al. 2019), the same cut in fine-tuning and labelling;
# the last step measures it against the head alone. The DAN reads every n-gram of the review.
# Steps 1-11 are demo/distill.sh (the pipeline for any labelled data) on IMDB's slices.
# Steps already done are skipped on rerun; fairseq-train resumes. Logs in WORK/logs/.
# Environment: DATA (the imdb dir), WORK (output dir), WEIGHTS (HF dir).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DATA=${DATA:-$REPO/../shared/data/imdb}
WORK=${WORK:-$REPO/demo/work/imdb}
WEIGHTS=${WEIGHTS:-$REPO/.cache/weights/all-MiniLM-L6-v2}
MODE=default
case ${1:-} in
    "") ;;
    --full) MODE=full; WORK=${WORK%/}-full ;;
    --smoke) MODE=smoke ;;
    *) echo "unknown option: $1 (use --full or --smoke)" >&2; exit 2 ;;
esac
source "$REPO/demo/lib.sh"
[ $MODE = dry ] || { mkdir -p "$WORK"; WORK=$(cd "$WORK" && pwd); }  # one name for the lock and distill.sh
lock_work "$WORK"; cd "$WORK"

# TRAIN: gold-labelled train reviews (the rest of train.tsv, VALID rows, is the held-out
# validation set: checkpoints and baselines' settings are chosen on it, never on test).
# FT_EXAMPLES of TRAIN fine-tune the teacher; the teacher labels TRAIN + UNSUP (the transfer set).
# WINDOW: the teacher's positions; HEAD of them the review's first WordPieces, the rest its last.
TRAIN=24000; VALID=1000; UNSUP=26000; TEST=25000; ABLATION_TEST=5000
FT_EXAMPLES=6000; FT_EPOCHS=1; WINDOW=128; HEAD=32
FEATURES=1000000; EPOCHS=4; FT_STAGE_EPOCHS=2
case $MODE in
    full) FT_EXAMPLES=24000; FT_EPOCHS=2; WINDOW=512; HEAD=128; UNSUP=50000; ABLATION_TEST=25000 ;;
    smoke) TRAIN=300; VALID=100; UNSUP=200; TEST=200; ABLATION_TEST=100; FT_EXAMPLES=200
           WINDOW=64; HEAD=16; FEATURES=20000; EPOCHS=1; FT_STAGE_EPOCHS=1 ;;
esac

step "0. IMDB slices: train / valid (the last rows of train.tsv) / test / unlabelled"
if todo input/unsup.txt; then
    mkdir -p input
    # sed, not head: no SIGPIPE under pipefail; every output renamed into place when whole
    sed -n "1p;2,$((TRAIN + 1))p" "$DATA/train.tsv" > input/train.tsv.part && mv input/train.tsv.part input/train.tsv
    sed -n "1p;$((TRAIN + 2)),$((TRAIN + VALID + 1))p" "$DATA/train.tsv" > input/valid.tsv.part
    mv input/valid.tsv.part input/valid.tsv
    sed -n "1,$((TEST + 1))p" "$DATA/test.tsv" > input/test.tsv.part && mv input/test.tsv.part input/test.tsv
    sed -n "1,${UNSUP}p" "$DATA/unsup.txt" > input/unsup.txt.part && mv input/unsup.txt.part input/unsup.txt
fi

# steps 1-11: the pipeline for any labelled data. Reviews average ~850 features (1-4-grams):
# the DAN keeps up to 8192 of them (--max-positions).
bash "$REPO/demo/distill.sh" --work "$WORK" --name imdb --title "Sparse distillation on IMDB" \
    --train input/train.tsv --dev input/valid.tsv --test input/test.tsv --unlabelled input/unsup.txt --header \
    --teacher-examples $FT_EXAMPLES --teacher-epochs $FT_EPOCHS --window $WINDOW --keep-head $HEAD \
    --features $FEATURES --epochs $EPOCHS --max-positions 8192 --kd-ft-epochs $FT_STAGE_EPOCHS --kd-ft-lr 3e-4 \
    --baselines

teacher_data() {  # teacher_data DIR CUT-ARGS...: WordPiece-encode (cut to the window) and binarize
    local dir=$1; shift
    todo $dir/data-bin/label/valid.idx || return 0
    mkdir -p $dir
    head -n $FT_EXAMPLES train.txt > $dir/ft.txt; head -n $FT_EXAMPLES train.label > $dir/ft.label
    run encode-ft-${dir//\//-} distill-bpe-encode --wordpiece-vocab teacher/base/tokenizer.json \
        --input $dir/ft.txt --output $dir/ft.bpe "$@"
    run encode-dev-${dir//\//-} distill-bpe-encode --wordpiece-vocab teacher/base/tokenizer.json \
        --input dev.txt --output $dir/dev.bpe "$@"
    run bin-input-${dir//\//-} fairseq-preprocess --only-source --srcdict teacher/base/dict.txt \
        --trainpref $dir/ft.bpe --validpref $dir/dev.bpe --destdir $dir/data-bin/input0 --workers 2
    run bin-label-${dir//\//-} fairseq-preprocess --only-source --srcdict label.dict.txt \
        --trainpref $dir/ft.label --validpref dev.label --destdir $dir/data-bin/label --workers 2
}

step "12. the teacher's window: head + tail against the head alone ($ABLATION_TEST test reviews)"
export BATCH_MULTIPLE=1  # as distill.sh fine-tunes the teacher: every example in every epoch
teacher_data teacher-head --max-tokens $((WINDOW - 2))
# the same fine-tuning on the head-only cut: only the cut differs
finetune_teacher "$WORK/teacher-head/data-bin" $FT_EXAMPLES $FT_EPOCHS 1e-4 16 accuracy teacher-head/ckpt
todo truncation.json && run truncation python - teacher/ckpt teacher-head/ckpt test.tsv $ABLATION_TEST \
    $WINDOW $HEAD truncation.json <<'EOF'
import json, sys
from user_dir.fileio import atomic_output
from user_dir.inference.teacher import Teacher
from user_dir.inference.timing import accuracy
from user_dir.preprocess.examples import read_examples
both, head_only, test, n, window, head, out = sys.argv[1:]
texts, labels = read_examples(test, "tsv", [0], 1, header=True)
texts, labels = texts[:int(n)], labels[:int(n)]
rows = {}
for name, ckpt, keep in ((f"head {head} + tail", both, int(head)), ("head only", head_only, None)):
    t = Teacher(ckpt, max_positions=int(window), keep_head=keep)
    rows[name] = accuracy(t.predict(texts), labels)
report = {"test_reviews": len(texts), "window": int(window), "accuracy": rows,
          "head_tail_minus_head_only": round(rows[f"head {head} + tail"] - rows["head only"], 2)}
with atomic_output(out, "w") as f:
    json.dump(report, f, indent=2)
print(json.dumps(report))
EOF
cat truncation.json
