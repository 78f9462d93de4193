#!/usr/bin/env bash
# ROSITA on SST-2 (Liu et al., AAAI 2021), one-step pruning: the teacher of demo/sst2.sh
# (all-MiniLM-L6-v2 fine-tuned, 6 layers, 12 heads, FFN 1536, width 384) is pruned in one
# step to the MiniLM analogue of ROSITA's a2_l8_f512_e128: 4 of 6 layers (the bottom ones),
# 4 of 12 heads and 512 of 1536 FFN neurons per layer by Taylor importance, word embedding
# rank 128 of 384 (truncated SVD). Then, with the teacher running inside training:
#   setting 1: prune the fine-tuned teacher, one-stage KD (prediction + hidden states);
#   setting 2: distill the teacher into a full-size copy of itself first (ROSITA's
#              "BERT(student)", prediction only), prune that, then the same KD with
#              BERT(student) as the teacher (as ROSITA's config_setting2);
#   baseline:  the pruned teacher fine-tuned on gold labels, no KD.
# Every KD stage trains on the D-BERT-augmented transfer set (distill-augment over the
# teacher's 20k labelled phrases, 10 new versions each), with no labels but the teacher's.
#
#   bash demo/rosita_sst2.sh           # about 110 minutes on 2 CPU cores after demo/sst2.sh: one
#                                      # pass over the augmented set per KD stage (BERT(student): a sample)
#   bash demo/rosita_sst2.sh --full    # ROSITA's schedule: all of it, 10 KD epochs (5 for BERT(student))
#   bash demo/rosita_sst2.sh --smoke   # after demo/sst2.sh --smoke: the same steps, tiny settings
#
# Runs demo/sst2.sh first if its report is missing. Every stage is skipped on rerun once its
# output exists; fairseq-train resumes from its last checkpoint. A GPU is used when present.
# Logs in WORK/logs/. Environment: DATA, WORK (shared with demo/sst2.sh).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DATA=${DATA:-$REPO/../shared/data/glue/SST-2}
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
after_main_demo "its fine-tuned teacher is ROSITA's"
TEACHER=teacher/ckpt/checkpoint_best.pt
TOKENIZER=teacher/base/tokenizer.json
LABEL_DICT="$REPO/data-bin-templates/sst2-binary/label/dict.txt"
R=rosita

# KD_ROWS: rows of the augmented set each KD stage sees (0: all; else a random sample, seed 1, the
# originals drawn like any other row). LR: the pruned students'; BERT(student) uses ROSITA's 2e-5.
SAMPLES=10; KD_ROWS=0; KD_EPOCHS=1; COPY_EPOCHS=1; COPY_ROWS=20000; GOLD_EPOCHS=3
SCORE_ROWS=4000; LR=1e-4; BATCH=32
case $MODE in
    full) KD_ROWS=0; KD_EPOCHS=10; COPY_ROWS=0; COPY_EPOCHS=5; GOLD_EPOCHS=5; SCORE_ROWS=0 ;;
    smoke) SAMPLES=1; KD_ROWS=200; COPY_ROWS=100; GOLD_EPOCHS=1; SCORE_ROWS=64; BATCH=16 ;;
esac
SHAPE="--num-layers 4 --keep-heads 4 --ffn-dim 512 --embed-rank 128"

step "1. the augmented transfer set: D-BERT rules over the teacher's $(wc -l < teacher/ft.txt) labelled phrases"
mkdir -p $R
if todo $R/aug.txt; then
    if [ -s dbert/labelled/train.aug.txt ] && [ $SAMPLES = 10 ]; then  # demo/dbert_sst2.sh made it already
        run aug-copy cp dbert/labelled/train.aug.txt $R/aug.txt.part
        mv $R/aug.txt.part $R/aug.txt
    else
        run rosita-augment distill-augment --input teacher/ft.txt --output $R/aug.txt --samples-per-example $SAMPLES \
            --p-mask 0.1 --p-pos 0.1 --p-ngram 0.25 --ngram-max 5 --seed 1 --workers 2
    fi
fi
sample() {  # sample ROWS OUT: ROWS random lines of the augmented set (all of it for 0)
    todo $2 || return 0
    if [ $1 = 0 ]; then cp $R/aug.txt $2.part
    else python -c "
import random, sys
lines = open(sys.argv[1], encoding='utf-8').read().splitlines()
random.Random(1).shuffle(lines)
open(sys.argv[2], 'w', encoding='utf-8').write(''.join(l + '\n' for l in lines[:int(sys.argv[3])]))
" $R/aug.txt $2.part $1; fi
    mv $2.part $2
}
sample $KD_ROWS $R/kd.txt
sample $COPY_ROWS $R/copy.txt
wc -l $R/aug.txt $R/kd.txt $R/copy.txt

bin() {  # bin NAME: R/NAME.txt in WordPiece -> R/NAME-bin (train; dev as valid with gold labels)
    local name=$1
    todo $R/$name-bin/label/valid.idx || return 0
    run encode-$name distill-bpe-encode --bpe wordpiece --wordpiece-vocab $TOKENIZER --input $R/$name.txt \
        --output $R/$name.bpe
    rm -rf $R/$name-bin
    run bin-$name fairseq-preprocess --only-source --srcdict teacher/base/dict.txt --trainpref $R/$name.bpe \
        --validpref teacher/dev.bpe --destdir $R/$name-bin/input0 --workers 2
    # transfer rows have no gold label: the train split learns from the teacher alone
    run bin-$name-label fairseq-preprocess --only-source --srcdict "$LABEL_DICT" --validpref dev.label \
        --destdir $R/$name-bin/label --workers 2
}
step "2. binarize the KD sets in the teacher's WordPiece (the online teacher reads the same tokens)"
bin kd
bin copy

steps() {  # steps ROWS EPOCHS: updates of a run
    echo $(( ($1 / BATCH + 1) * $2 ))
}
student() {  # student NAME DATA MODEL-DIR EPOCHS ROWS LR CRITERION-FLAGS...: fairseq-train from MODEL-DIR/model.pt
    local name=$1 data=$2 from=$3 epochs=$4 rows=$5 lr=$6; shift 6
    [ -e $R/$name/done ] && return
    local updates; updates=$(steps $rows $epochs)
    train rosita-$name $R/$name fairseq-train $data --user-dir "$REPO/user_dir" --task glue_distillation \
        --num-classes 2 --init-token 0 $(cat $from/model-args.txt) --finetune-from-model "$WORK/$from/model.pt" \
        --optimizer adam --adam-betas '(0.9, 0.98)' --adam-eps 1e-6 --weight-decay 0.01 --clip-norm 1.0 \
        --lr $lr --lr-scheduler polynomial_decay --warmup-updates $(( updates / 10 )) --total-num-update $updates \
        --batch-size $BATCH --max-epoch $epochs --num-workers 0 \
        --bpe wordpiece --wordpiece-vocab "$WORK/$TOKENIZER" \
        --best-checkpoint-metric accuracy --maximize-best-checkpoint-metric \
        --save-dir $R/$name --no-epoch-checkpoints --log-format simple --log-interval 100 "$@"
    touch $R/$name/done
}
KD="--criterion layerwise_distillation --prediction-loss soft_ce"
KD_ROWS_N=$(wc -l < $R/kd.txt); COPY_ROWS_N=$(wc -l < $R/copy.txt); GOLD_ROWS=$(wc -l < teacher/ft.txt)

step "3. Taylor importance of the teacher's heads and FFN neurons (gold labels, $SCORE_ROWS training phrases)"
score_flag=""; [ $SCORE_ROWS != 0 ] && score_flag="--max-sentences $SCORE_ROWS"
todo $R/teacher.importance.json && run importance-teacher distill-importance --checkpoint $TEACHER \
    --data teacher/data-bin --loss ce $score_flag --output $R/teacher.importance.json

step "4. setting 1: prune the teacher in one step, then one-stage KD on the augmented set"
todo $R/pruned1/model.pt && run prune-1 distill-prune --checkpoint $TEACHER --importance $R/teacher.importance.json \
    $SHAPE --output $R/pruned1
student s1 $R/kd-bin $R/pruned1 $KD_EPOCHS $KD_ROWS_N $LR $KD --hidden-weight 1 --teacher-checkpoint "$WORK/$TEACHER"

step "5. baseline: the same pruned model fine-tuned on the gold labels ($GOLD_ROWS phrases), no teacher"
student baseline teacher/data-bin $R/pruned1 $GOLD_EPOCHS $GOLD_ROWS $LR --criterion distillation

step "6. setting 2: BERT(student), the teacher distilled into a copy of itself (prediction only); pruned, it learns from it"
todo $R/copy/model.pt && run copy distill-prune --checkpoint $TEACHER --output $R/copy
student bert-student $R/copy-bin $R/copy $COPY_EPOCHS $COPY_ROWS_N 2e-5 $KD --hidden-weight 0 \
    --teacher-checkpoint "$WORK/$TEACHER"
todo $R/bert-student.importance.json && run importance-bert-student distill-importance \
    --checkpoint $R/bert-student/checkpoint_best.pt --data $R/kd-bin --loss soft_ce \
    --teacher-checkpoint $TEACHER $score_flag --output $R/bert-student.importance.json
todo $R/pruned2/model.pt && run prune-2 distill-prune --checkpoint $R/bert-student/checkpoint_best.pt \
    --importance $R/bert-student.importance.json $SHAPE --output $R/pruned2
student s2 $R/kd-bin $R/pruned2 $KD_EPOCHS $KD_ROWS_N $LR $KD --hidden-weight 1 \
    --teacher-checkpoint "$WORK/$R/bert-student/checkpoint_best.pt"

step "7. report: the teacher and every student from raw dev text to labels, on this machine"
run rosita-report python "$REPO/demo/report.py" --dev "$DEV_TSV" --teacher teacher/ckpt \
    --student "ROSITA setting 1=$R/s1:$R/kd-bin" \
    --student "ROSITA setting 2=$R/s2:$R/kd-bin" \
    --student "pruned, gold only=$R/baseline:teacher/data-bin" \
    --student "BERT(student) 6L=$R/bert-student:$R/copy-bin" \
    --output $R/report --title "ROSITA one-step pruning on SST-2 (MiniLM teacher)"
last_table "$WORK/logs/rosita-report.log"
