#!/usr/bin/env bash
# ROSITA on CoLA (Liu et al., AAAI 2021): the steps of demo/rosita_sst2.sh (settings 1-4 and the
# no-KD baseline, same target shape) with a CoLA teacher: all-MiniLM-L6-v2 fine-tuned on the
# 8,551 training sentences (sentence_prediction, best checkpoint by Matthews correlation).
# The students keep their best checkpoint by MCC too, and the report has an MCC column.
#
#   bash demo/rosita_cola.sh          # on 2 CPU cores: the teacher, then one pass over the
#                                     # augmented set (10 D-BERT versions of each sentence) per KD stage
#   bash demo/rosita_cola.sh --full   # ROSITA's schedule: 10 KD epochs (5 for BERT(student))
#   bash demo/rosita_cola.sh --smoke  # setting 1 and the baseline on a slice, tiny settings (the tests'
#                                     # check; the SST-2 smoke runs the other shared stages)
#
# Every stage is skipped on rerun once its output exists; fairseq-train resumes from its last
# checkpoint. Logs in WORK/logs/. Environment: DATA (GLUE CoLA dir), WORK, WEIGHTS.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DATA=${DATA:-$REPO/../shared/data/glue/CoLA}
WORK=${WORK:-$REPO/demo/work/cola}
WEIGHTS=${WEIGHTS:-$REPO/.cache/weights/all-MiniLM-L6-v2}
MODE=default
case ${1:-} in
    "") ;;
    --full) MODE=full; WORK=${WORK%/}-full ;;
    --smoke) MODE=smoke ;;
    *) echo "unknown option: $1 (use --full or --smoke)" >&2; exit 2 ;;
esac
source "$REPO/demo/lib.sh"
lock_work "$WORK"
cd "$WORK"
LABEL_DICT="$REPO/data-bin-templates/sst2-binary/label/dict.txt"  # classes 0 and 1, as CoLA's
ROWS=1000000; DEV_ROWS=1000000; FT_EPOCHS=5
[ $MODE = smoke ] && { ROWS=300; DEV_ROWS=100; FT_EPOCHS=1; }

step "1. sentences and labels (CoLA's TSV: source, label, original label, sentence; no header)"
for split in train dev; do
    if todo $split.label; then
        rows=$ROWS; [ $split = dev ] && rows=$DEV_ROWS
        # awk ends every line, the last one of dev.tsv too (it has no final newline)
        awk -F'\t' -v n=$rows 'NR <= n {print $4 > "'$split'.txt.part"; print $2 > "'$split'.label.part"}' \
            "$DATA/$split.tsv"
        mv $split.txt.part $split.txt; mv $split.label.part $split.label
    fi
done
if todo dev.tsv; then  # the dev set as the report and distill-predict read it: a header, text, label
    { printf 'sentence\tlabel\n'; paste dev.txt dev.label; } > dev.tsv.part
    mv dev.tsv.part dev.tsv
fi
wc -l train.txt dev.txt

step "2. import the Hugging Face teacher into fairseq"
todo teacher/base/model.pt && run import-teacher distill-import-hf --hf-dir "$WEIGHTS" --output teacher/base

step "3. teacher data: WordPiece-encode, binarize"
if todo teacher/data-bin/label/valid.idx; then
    mkdir -p teacher
    cp train.txt teacher/ft.txt; cp train.label teacher/ft.label
    run encode-ft distill-bpe-encode --wordpiece-vocab teacher/base/tokenizer.json --input teacher/ft.txt \
        --output teacher/ft.bpe
    run encode-dev distill-bpe-encode --wordpiece-vocab teacher/base/tokenizer.json --input dev.txt \
        --output teacher/dev.bpe
    run teacher-bin-input fairseq-preprocess --only-source --srcdict teacher/base/dict.txt \
        --trainpref teacher/ft.bpe --validpref teacher/dev.bpe --destdir teacher/data-bin/input0 --workers 2
    run teacher-bin-label fairseq-preprocess --only-source --srcdict "$LABEL_DICT" \
        --trainpref teacher/ft.label --validpref dev.label --destdir teacher/data-bin/label --workers 2
fi

step "4. fine-tune the teacher (fairseq's sentence_prediction, $FT_EPOCHS epochs, best by MCC)"
finetune_teacher "$WORK/teacher/data-bin" $(wc -l < train.label) $FT_EPOCHS 5e-5 10 mcc

TEACHER=teacher/ckpt/checkpoint_best.pt
TOKENIZER=teacher/base/tokenizer.json
DEV_TSV=$WORK/dev.tsv
R=rosita; TASK_NAME=CoLA; METRIC=mcc; REPORT_FLAGS=--mcc; MADE_AUG=""
# the sizes (demo/rosita_stages.sh says what each one is); the gold baseline gets 5 epochs
SAMPLES=10; KD_ROWS=0; KD_EPOCHS=1; COPY_EPOCHS=1; COPY_ROWS=20000; GOLD_EPOCHS=5
SCORE_ROWS=4000; LR=1e-4; BATCH=32
PERIOD3=0.5; PERIOD4=0.1; DEPTH_PERIOD=0.5
case $MODE in
    full) KD_ROWS=0; KD_EPOCHS=10; COPY_ROWS=0; COPY_EPOCHS=5; GOLD_EPOCHS=10; SCORE_ROWS=0
          PERIOD3=0.09; PERIOD4=0.01; DEPTH_PERIOD=0.09 ;;
    smoke) SAMPLES=1; KD_ROWS=200; COPY_ROWS=100; GOLD_EPOCHS=1; SCORE_ROWS=64; BATCH=16; SETTINGS=1 ;;
esac
source "$REPO/demo/rosita_stages.sh"
