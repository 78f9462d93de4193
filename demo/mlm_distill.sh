#!/usr/bin/env bash
# Task-agnostic distillation of a masked-LM teacher (DistilBERT, Sanh et al. 2019) on the IMDB
# corpus of unlabelled reviews, then SST-2 fine-tuning of what it made:
#   1. the corpus in the teacher's WordPiece, binarized (reviews of ../shared/data/imdb/unsup.txt;
#      HTML line breaks become spaces; the last VALID_REVIEWS reviews are the validation split);
#   2. the teacher (all-MiniLM-L6-v2, which ships without an MLM head) adapted to the domain with
#      fairseq's own masked_lm task: its head is learnt and its encoder moves to reviews;
#   3. a 3-layer student of the adapted teacher's layers 0,2,4 (every other one, as DistilBERT's
#      0,2,4,7,9,11 of 12), embeddings and MLM head kept (distill-extract-student);
#   4. DistilBERT's composite loss with the adapted teacher inside training (masked_lm_distillation,
#      composite_distillation: 5 KL at T=2 + 2 MLM + 1 cosine), logged to TensorBoard;
#   5. SST-2 fine-tuning, the main job's teacher recipe (fairseq's sentence_prediction on its 20k
#      phrases, 1 epoch), of the distilled student, of the same extraction without distillation,
#      and of the adapted teacher;
#   6. report: dev accuracy, parameters and CPU throughput of each beside the main job's teacher
#      (mlm/report.json, .png), each loss term's curve (mlm/losses.png), mlm/summary.json.
#
#   bash demo/mlm_distill.sh          # on 2 CPU cores after demo/sst2.sh: budgeted updates on a
#                                     # slice of the corpus (sizes below): 1 h 46 min measured,
#                                     # with tests beside it (about 90 min alone)
#   bash demo/mlm_distill.sh --full   # all 50,000 reviews, 3 epochs of distillation: many hours on CPU
#   bash demo/mlm_distill.sh --smoke  # after demo/sst2.sh --smoke: the same steps, tiny settings
#
# Runs demo/sst2.sh first if its report is missing (its teacher import, teacher data and
# fine-tuned teacher are reused). Finished stages are skipped on rerun; fairseq-train resumes
# from its last checkpoint. Logs in WORK/logs/; TensorBoard: tensorboard --logdir WORK/mlm/tb.
# Environment: DATA (GLUE SST-2), CORPUS (one review per line), WORK (shared with demo/sst2.sh).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DATA=${DATA:-$REPO/../shared/data/glue/SST-2}
CORPUS=${CORPUS:-$REPO/../shared/data/imdb/unsup.txt}
BASE=${WORK:-$REPO/demo/work/sst2}
MODE=default
case ${1:-} in
    "") ;;
    --full) MODE=full ;;
    --smoke) MODE=smoke ;;
    *) echo "unknown option: $1 (use --full or --smoke)" >&2; exit 2 ;;
esac
WORK=$BASE; [ $MODE = full ] && WORK=${BASE%/}-full  # demo/sst2.sh --full's work dir and teacher
source "$REPO/demo/lib.sh"
after_main_demo "its teacher import and its fine-tuned teacher are the comparison"
M=mlm

# REVIEWS: corpus reviews used (0: all); ADAPT_UPDATES / DISTILL_UPDATES: updates of batches of
# BATCH sequences of at most TOKENS tokens; DistilBERT's learning rate is 5e-4 for batches of
# 4k sequences: ours are 32 sequences, hence lower.
# Measured here (2 cores): an adaptation update 2 s, a distillation update 4 s (the teacher's
# forward, and both LM heads over every real token for the KL), so the default runs about one
# pass over 12,000 reviews (~36k sequences) in each stage.
REVIEWS=12000; VALID_REVIEWS=300; TOKENS=128; BATCH=32
ADAPT_UPDATES=600; ADAPT_LR=2e-4; DISTILL_UPDATES=750; DISTILL_LR=2e-4; LAYERS=0,2,4; LOG=25
case $MODE in
    full) REVIEWS=0; ADAPT_UPDATES=10000; DISTILL_UPDATES=0 ;;  # 0: 3 epochs over the corpus
    smoke) REVIEWS=60; VALID_REVIEWS=10; TOKENS=64; BATCH=8; ADAPT_UPDATES=4; DISTILL_UPDATES=4; LOG=1 ;;
esac
mkdir -p $M

step "1. the corpus: $( [ $REVIEWS = 0 ] && echo all || echo $REVIEWS ) reviews of $(basename "$CORPUS") in the teacher's WordPiece"
if todo $M/corpus-bin/valid.idx; then
    total=$(wc -l < "$CORPUS")
    n=$REVIEWS; [ $n = 0 ] && n=$((total - VALID_REVIEWS))
    if [ $((n + VALID_REVIEWS)) -gt $total ]; then
        echo "$CORPUS has $total reviews: fewer than $n + $VALID_REVIEWS" >&2; exit 1
    fi
    head -n $n "$CORPUS" > $M/train.txt.part && mv $M/train.txt.part $M/train.txt
    tail -n $VALID_REVIEWS "$CORPUS" > $M/valid.txt.part && mv $M/valid.txt.part $M/valid.txt
    for split in train valid; do
        run mlm-encode-$split distill-bpe-encode --wordpiece-vocab teacher/base/tokenizer.json \
            --input $M/$split.txt --output $M/$split.bpe
    done
    rm -rf $M/corpus-bin
    run mlm-bin fairseq-preprocess --only-source --srcdict teacher/base/dict.txt --trainpref $M/train.bpe \
        --validpref $M/valid.bpe --destdir $M/corpus-bin --workers 2
fi

MODEL_ARGS=$(cat teacher/base/model-args.txt)
step "2. adapt the teacher to the reviews (fairseq's masked_lm, $ADAPT_UPDATES updates): it learns an MLM head"
train mlm-adapt $M/adapted fairseq-train $M/corpus-bin --user-dir "$REPO/user_dir" \
    --finetune-from-model "$WORK/teacher/base/model.pt" $MODEL_ARGS \
    --task masked_lm --criterion masked_lm --tokens-per-sample $TOKENS --sample-break-mode none \
    --optimizer adam --adam-betas '(0.9, 0.98)' --adam-eps 1e-6 --weight-decay 0.01 --clip-norm 1.0 \
    --lr $ADAPT_LR --lr-scheduler polynomial_decay --warmup-updates $((ADAPT_UPDATES / 10)) \
    --total-num-update $ADAPT_UPDATES --max-update $ADAPT_UPDATES --batch-size $BATCH --num-workers 0 \
    --validate-interval-updates $((ADAPT_UPDATES / 2 > 0 ? ADAPT_UPDATES / 2 : 1)) --max-epoch 0 \
    --save-interval-updates $((ADAPT_UPDATES / 2 > 0 ? ADAPT_UPDATES / 2 : 1)) --keep-interval-updates 1 \
    --save-dir $M/adapted --no-epoch-checkpoints --log-format simple --log-interval $LOG
ADAPTED=$M/adapted/checkpoint_best.pt

step "3. the student: layers $LAYERS of the adapted teacher, with its embeddings and MLM head"
todo $M/student/model.pt && run mlm-extract distill-extract-student --checkpoint $ADAPTED --layers $LAYERS \
    --output $M/student

step "4. distil: DistilBERT's composite loss, the adapted teacher inside training"
updates_flags="--max-update $DISTILL_UPDATES --total-num-update $DISTILL_UPDATES"
warmup=$((DISTILL_UPDATES / 20))
if [ $DISTILL_UPDATES = 0 ]; then  # --full: 3 epochs (sequences counted by the task: fairseq's own count)
    updates_flags="--max-epoch 3"; warmup=1000
fi
train mlm-distill $M/distilled fairseq-train $M/corpus-bin --user-dir "$REPO/user_dir" \
    --task masked_lm_distillation --tokens-per-sample $TOKENS --teacher-checkpoint "$WORK/$ADAPTED" \
    $(cat $M/student/model-args.txt) --finetune-from-model "$WORK/$M/student/model.pt" \
    --criterion composite_distillation --alpha-ce 5 --alpha-mlm 2 --alpha-cos 1 --temperature 2 \
    --optimizer adam --adam-betas '(0.9, 0.98)' --adam-eps 1e-6 --weight-decay 0.0 --clip-norm 5.0 \
    --lr $DISTILL_LR --lr-scheduler polynomial_decay --warmup-updates $warmup $updates_flags \
    --batch-size $BATCH --num-workers 0 --tensorboard-logdir $M/tb \
    --validate-interval-updates $((DISTILL_UPDATES / 2 > 0 ? DISTILL_UPDATES / 2 : 1000)) \
    --save-interval-updates $((DISTILL_UPDATES / 2 > 0 ? DISTILL_UPDATES / 2 : 1000)) --keep-interval-updates 1 \
    --best-checkpoint-metric loss \
    --save-dir $M/distilled --no-epoch-checkpoints --log-format simple --log-interval $LOG

step "5. SST-2 fine-tuning, the main job's teacher recipe ($(wc -l < teacher/ft.txt) phrases, 1 epoch)"
FT_EXAMPLES=$(wc -l < teacher/ft.txt)
finetune_teacher "$WORK/teacher/data-bin" $FT_EXAMPLES 1 1e-4 16 accuracy $M/ft-distilled \
    $M/student $M/distilled/checkpoint_best.pt
finetune_teacher "$WORK/teacher/data-bin" $FT_EXAMPLES 1 1e-4 16 accuracy $M/ft-extracted $M/student
finetune_teacher "$WORK/teacher/data-bin" $FT_EXAMPLES 1 1e-4 16 accuracy $M/ft-adapted teacher/base $ADAPTED

step "6. report: raw SST-2 dev text to labels on this machine; the loss curves"
todo $M/report.json && run mlm-report python "$REPO/demo/report.py" --dev "$DEV_TSV" --teacher teacher/ckpt \
    --transformer "distilled 3L=$M/ft-distilled" --transformer "extracted 3L, not distilled=$M/ft-extracted" \
    --transformer "adapted teacher 6L=$M/ft-adapted" \
    --output $M/report --title "Masked-LM distillation (DistilBERT) on IMDB reviews, fine-tuned on SST-2"
last_table "$WORK/logs/mlm-report.log"
todo $M/summary.json && run mlm-summary python "$REPO/demo/mlm_summary.py" --work . --output $M/summary.json \
    --curves $M/losses.png
cat $M/summary.json
