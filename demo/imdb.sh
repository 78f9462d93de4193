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
lock_work "$WORK"; cd "$WORK"
LABEL_DICT="$REPO/data-bin-templates/sst2-binary/label/dict.txt"  # labels 0 / 1, as IMDB's

# TRAIN: gold-labelled train reviews (the rest of train.tsv, VALID rows, is the held-out
# validation set: checkpoints and baselines' settings are chosen on it, never on test).
# FT_EXAMPLES of TRAIN fine-tune the teacher; the teacher labels TRAIN + UNSUP (the transfer set).
# WINDOW: the teacher's positions; HEAD of them the review's first WordPieces, the rest its last.
TRAIN=24000; VALID=1000; UNSUP=26000; TEST=25000; ABLATION_TEST=5000
FT_EXAMPLES=6000; FT_EPOCHS=1; WINDOW=128; HEAD=32
FEATURES=1000000; EPOCHS=4; FT_STAGE_EPOCHS=2; BATCH=64; LR=1e-3; FT_LR=3e-4
DAN="--arch feature_based_linear_model --encoder-embed-dim 384 --embed-init teacher/base/model.pt"
DAN="$DAN --hidden-dim 128 --head-layers 3 --pooler-activation-fn relu --pooler-dropout 0.2"
case $MODE in
    full) FT_EXAMPLES=24000; FT_EPOCHS=2; WINDOW=512; HEAD=128; UNSUP=50000; ABLATION_TEST=25000 ;;
    smoke) TRAIN=300; VALID=100; UNSUP=200; TEST=200; ABLATION_TEST=100; FT_EXAMPLES=200
           WINDOW=64; HEAD=16; FEATURES=20000; EPOCHS=1; FT_STAGE_EPOCHS=1 ;;
esac
CUT="--max-tokens $((WINDOW - 2)) --keep-head $HEAD"  # the BPE-level cut: <s> and </s> take 2 positions
WINDOW_ARGS="--max-positions $WINDOW --keep-head $HEAD"
ROWS=$((TRAIN + UNSUP))

step "1. raw text: train / valid / test / unlabelled (TSVs keep their header for the report)"
if todo transfer.txt; then
    # sed, not head: no SIGPIPE under pipefail; every output renamed into place when whole
    sed -n "1p;2,$((TRAIN + 1))p" "$DATA/train.tsv" > train.tsv.part && mv train.tsv.part train.tsv
    sed -n "1p;$((TRAIN + 2)),$((TRAIN + VALID + 1))p" "$DATA/train.tsv" > valid.tsv.part && mv valid.tsv.part valid.tsv
    sed -n "1,$((TEST + 1))p" "$DATA/test.tsv" > test.tsv.part && mv test.tsv.part test.tsv
    for split in train valid; do
        tail -n +2 $split.tsv | cut -f1 > $split.txt.part && mv $split.txt.part $split.txt
        tail -n +2 $split.tsv | cut -f2 > $split.label.part && mv $split.label.part $split.label
    done
    sed -n "1,${UNSUP}p" "$DATA/unsup.txt" > unsup.txt.part && mv unsup.txt.part unsup.txt
    cat train.txt unsup.txt > transfer.txt.part && mv transfer.txt.part transfer.txt
fi
wc -l train.txt valid.txt unsup.txt transfer.txt

step "2. import the Hugging Face teacher into fairseq"
todo teacher/base/model.pt && run import-teacher distill-import-hf --hf-dir "$WEIGHTS" --output teacher/base

teacher_data() {  # teacher_data DIR CUT-ARGS...: WordPiece-encode (cut to the window) and binarize
    local dir=$1; shift
    todo $dir/data-bin/label/valid.idx || return 0
    mkdir -p $dir
    head -n $FT_EXAMPLES train.txt > $dir/ft.txt; head -n $FT_EXAMPLES train.label > $dir/ft.label
    run encode-ft-${dir//\//-} distill-bpe-encode --wordpiece-vocab teacher/base/tokenizer.json \
        --input $dir/ft.txt --output $dir/ft.bpe "$@"
    run encode-valid-${dir//\//-} distill-bpe-encode --wordpiece-vocab teacher/base/tokenizer.json \
        --input valid.txt --output $dir/valid.bpe "$@"
    run bin-input-${dir//\//-} fairseq-preprocess --only-source --srcdict teacher/base/dict.txt \
        --trainpref $dir/ft.bpe --validpref $dir/valid.bpe --destdir $dir/data-bin/input0 --workers 2
    run bin-label-${dir//\//-} fairseq-preprocess --only-source --srcdict "$LABEL_DICT" \
        --trainpref $dir/ft.label --validpref valid.label --destdir $dir/data-bin/label --workers 2
}

step "3. teacher data: $FT_EXAMPLES reviews, each cut to $((WINDOW - 2)) WordPieces (head $HEAD + tail $((WINDOW - 2 - HEAD)))"
teacher_data teacher $CUT

step "4. fine-tune the teacher (fairseq's sentence_prediction, $FT_EPOCHS epoch(s), window $WINDOW)"
finetune_teacher "$WORK/teacher/data-bin" $FT_EXAMPLES $FT_EPOCHS 1e-4 16

step "5. teacher logits: the transfer set ($TRAIN train + $UNSUP unlabelled reviews) and valid"
for split in transfer valid; do
    todo teacher/$split.npy && run logits-$split distill-teacher-logits --checkpoint-dir teacher/ckpt \
        $WINDOW_ARGS --input $split.txt --output teacher/$split.npy
done

step "6. n-gram vocabulary over the transfer set (1-4-grams, top $FEATURES)"
todo vocab.txt && run ngram-dict distill-ngram-dict --input transfer.txt --output vocab.txt \
    --ngram-range 1 4 --max-features $FEATURES --workers 2

step "7. n-gram features, one line per review"
for split in transfer valid; do
    todo $split.ngrams && run ngrams-$split distill-extract-ngrams --vocab vocab.txt --input $split.txt \
        --output $split.ngrams --workers 2
done
todo train.ngrams && { head -n $TRAIN transfer.ngrams > train.ngrams.part; mv train.ngrams.part train.ngrams; }

step "8. binarize: the transfer set with teacher logits (KD), the gold train labels (FT)"
if todo data-bin/distill/valid.npy; then
    rm -rf data-bin
    run bin-input fairseq-preprocess --only-source --srcdict vocab.txt --trainpref transfer.ngrams \
        --validpref valid.ngrams --destdir data-bin/input0 --workers 2
    # the transfer set has no gold labels (the unlabelled reviews): valid's alone
    run bin-label fairseq-preprocess --only-source --srcdict "$LABEL_DICT" \
        --validpref valid.label --destdir data-bin/label --workers 2
    cp vocab.txt.json data-bin/input0/ngrams.json
    mkdir -p data-bin/distill
    # each .json (class order) before its .npy: the .npy is what a rerun trusts
    cp teacher/transfer.json data-bin/distill/train.json; cp teacher/transfer.npy data-bin/distill/train.npy
    cp teacher/valid.json data-bin/distill/valid.json; cp teacher/valid.npy data-bin/distill/valid.npy
fi
if todo data-bin-ft/label/valid.idx; then
    rm -rf data-bin-ft
    run bin-ft-input fairseq-preprocess --only-source --srcdict vocab.txt --trainpref train.ngrams \
        --validpref valid.ngrams --destdir data-bin-ft/input0 --workers 2
    cp vocab.txt.json data-bin-ft/input0/ngrams.json
    run bin-ft-label fairseq-preprocess --only-source --srcdict "$LABEL_DICT" \
        --trainpref train.label --validpref valid.label --destdir data-bin-ft/label --workers 2
fi

# reviews average ~850 features (1-4-grams): --max-positions keeps up to 8192 of them
COMMON="--user-dir $REPO/user_dir --task feature_based_sentence_prediction --num-classes 2 --max-positions 8192"
COMMON="$COMMON --optimizer mixed_adam --adam-betas (0.9,0.98) --adam-eps 1e-6 --weight-decay 0.01"
COMMON="$COMMON --lr-scheduler polynomial_decay --batch-size $BATCH --feature-dropout 0.4 --num-workers 0"
COMMON="$COMMON --best-checkpoint-metric accuracy --maximize-best-checkpoint-metric --no-epoch-checkpoints"
COMMON="$COMMON --log-format simple --log-interval 200"

step "9. distill into the DAN on the transfer set (KD: teacher logits only, $ROWS reviews)"
train dan checkpoints fairseq-train data-bin $COMMON --distillation-target $DAN \
    --criterion distillation --distillation-alpha 1.0 --lr $LR --warmup-updates 200 \
    --total-num-update $(( (ROWS / BATCH + 1) * EPOCHS )) --max-epoch $EPOCHS --save-dir checkpoints

step "10. fine-tune the DAN on the gold train labels (KD+FT, the paper's third stage)"
# --finetune-from-model: the KD student's weights on the first launch; a rerun resumes
train dan-ft checkpoints-ft fairseq-train data-bin-ft $COMMON $DAN \
    --finetune-from-model "$WORK/checkpoints/checkpoint_best.pt" \
    --criterion distillation --distillation-alpha 0.0 --lr $FT_LR --warmup-updates 50 \
    --total-num-update $(( (TRAIN / BATCH + 1) * FT_STAGE_EPOCHS )) --max-epoch $FT_STAGE_EPOCHS \
    --save-dir checkpoints-ft

step "11. report: $TEST test reviews, raw text to label; fastText and TF-IDF LR on the gold train labels"
todo report.json && run report python "$REPO/demo/report.py" --dev test.tsv --split-name test \
    --teacher teacher/ckpt --teacher-max-positions $WINDOW --teacher-keep-head $HEAD \
    --student "DAN (KD)=checkpoints:data-bin" --student "DAN (KD+FT)=checkpoints-ft:data-bin-ft" \
    --baselines --train train.tsv --valid valid.tsv --output report --title "Sparse distillation on IMDB"
last_table "$WORK/logs/report.log"

step "12. the teacher's window: head + tail against the head alone ($ABLATION_TEST test reviews)"
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
