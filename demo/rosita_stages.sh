# The ROSITA stages of demo/rosita_sst2.sh and demo/rosita_cola.sh (sourced, in WORK, after the
# teacher is fine-tuned). The caller sets: REPO, WORK, MODE, R (output folder), TEACHER,
# TOKENIZER, LABEL_DICT, DEV_TSV and REPORT_FLAGS (its columns, --mcc), TASK_NAME, METRIC
# (the students' best-checkpoint metric), MADE_AUG (an augmented set another demo made, or
# empty), and the sizes below. The teacher's folder holds ft.txt (its labelled training texts),
# dev.bpe, data-bin/ (gold train, dev as valid); dev.label is in WORK.
#
# KD_ROWS: rows of the augmented set each KD stage sees (0: all; else a random sample, seed 1,
# the originals drawn like any other row). LR: the pruned students'; BERT(student) and the depth
# stage use ROSITA's 2e-5. PERIOD3/PERIOD4/DEPTH_PERIOD: share of a stage's training within
# which its pruning steps fall (ROSITA: the first of 10 epochs in setting 3, a tenth of one in
# setting 4, half of the depth stage's 5); pruning ends within the first epoch, before its
# validation, so that checkpoint_best.pt has the final shape. SETTINGS: which of 1-4 to run
# (default all; the baseline always runs). SEED: fairseq-train's seed (default 1); another seed
# trains every student again, BERT(student) included, into R/seedSEED/ (its own report there),
# on the same transfer set, importance of the teacher and one-step pruned teacher; demo/seeds.py
# summarises several seeds' reports.

SHAPE="--num-layers 4 --keep-heads 4 --ffn-dim 512 --embed-rank 128"
SETTINGS=${SETTINGS:-1 2 3 4}
SEED=${SEED:-1}
S=$R; X=""  # where the students go, and the suffix of their logs' names
[ "$SEED" = 1 ] || { S=$R/seed$SEED; X=-seed$SEED; }
mkdir -p $S
wants() { [[ " $SETTINGS " == *" $1 "* ]]; }

step "1. the augmented transfer set: D-BERT rules over the teacher's $(wc -l < teacher/ft.txt) labelled examples"
mkdir -p $R
if todo $R/aug.txt; then
    if [ -n "${MADE_AUG:-}" ] && [ -s "$MADE_AUG" ] && [ $SAMPLES = 10 ]; then  # another demo made it already
        run aug-copy cp "$MADE_AUG" $R/aug.txt.part
        mv $R/aug.txt.part $R/aug.txt
    else
        run rosita-augment distill-augment --input teacher/ft.txt --output $R/aug.txt --samples-per-example $SAMPLES \
            --p-mask 0.1 --p-pos 0.1 --p-ngram 0.25 --ngram-max 5 --seed 1 --workers 2
    fi
fi
sample() {  # sample ROWS OUT: ROWS random lines of the augmented set (all of it for 0)
    local want=$1 all; all=$(wc -l < $R/aug.txt)
    { [ $want = 0 ] || [ $want -gt $all ]; } && want=$all
    if ! todo $2; then  # a rerun with another size must not train on the old sample unnoticed
        [ $(wc -l < $2) = $want ] && return 0
        echo "$WORK/$2 has $(wc -l < $2) rows, this run asks for $want: use another WORK," \
             "or remove $2, ${2%.txt}-bin and the students trained on it" >&2
        exit 1
    fi
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

steps() {  # steps ROWS EPOCHS: updates of a run (fixed-size batches: ceil(ROWS / BATCH) an epoch)
    echo $(( ($1 + BATCH - 1) / BATCH * $2 ))
}
student() {  # student NAME DATA MODEL-DIR EPOCHS ROWS LR CRITERION-FLAGS...: fairseq-train from MODEL-DIR/model.pt
    local name=$1 data=$2 from=$3 epochs=$4 rows=$5 lr=$6; shift 6
    [ -e $S/$name/done ] && return
    local updates; updates=$(steps $rows $epochs)
    train rosita$X-$name $S/$name fairseq-train $data --user-dir "$REPO/user_dir" --task glue_distillation \
        --num-classes 2 --init-token 0 $(cat $from/model-args.txt) --finetune-from-model "$WORK/$from/model.pt" \
        --optimizer adam --adam-betas '(0.9, 0.98)' --adam-eps 1e-6 --weight-decay 0.01 --clip-norm 1.0 \
        --lr $lr --lr-scheduler polynomial_decay --warmup-updates $(( updates / 10 )) --total-num-update $updates \
        --batch-size $BATCH --max-epoch $epochs --num-workers 0 \
        --bpe wordpiece --wordpiece-vocab "$WORK/$TOKENIZER" \
        --best-checkpoint-metric $METRIC --maximize-best-checkpoint-metric \
        --seed $SEED --save-dir $S/$name --no-epoch-checkpoints --log-format simple --log-interval 100 "$@"
    touch $S/$name/done
}
KD="--criterion layerwise_distillation --prediction-loss soft_ce"
KD_ROWS_N=$(wc -l < $R/kd.txt); COPY_ROWS_N=$(wc -l < $R/copy.txt); GOLD_ROWS=$(wc -l < teacher/ft.txt)

step "3. Taylor importance of the teacher's heads and FFN neurons (gold labels, $SCORE_ROWS training examples)"
score_flag=""; [ $SCORE_ROWS != 0 ] && score_flag="--max-sentences $SCORE_ROWS"
todo $R/teacher.importance.json && run importance-teacher distill-importance --checkpoint $TEACHER \
    --data teacher/data-bin --loss ce $score_flag --output $R/teacher.importance.json

step "4. setting 1: prune the teacher in one step, then one-stage KD on the augmented set"
todo $R/pruned1/model.pt && run prune-1 distill-prune --checkpoint $TEACHER --importance $R/teacher.importance.json \
    $SHAPE --output $R/pruned1
wants 1 && student s1 $R/kd-bin $R/pruned1 $KD_EPOCHS $KD_ROWS_N $LR $KD --hidden-weight 1 --teacher-checkpoint "$WORK/$TEACHER"

step "5. baseline: the same pruned model fine-tuned on the gold labels ($GOLD_ROWS examples), no teacher"
student baseline teacher/data-bin $R/pruned1 $GOLD_EPOCHS $GOLD_ROWS $LR --criterion distillation

if wants 2 || wants 3 || wants 4; then
step "6. BERT(student): the teacher distilled into a copy of itself (prediction only)"
todo $R/copy/model.pt && run copy distill-prune --checkpoint $TEACHER --output $R/copy
student bert-student $R/copy-bin $R/copy $COPY_EPOCHS $COPY_ROWS_N 2e-5 $KD --hidden-weight 0 \
    --teacher-checkpoint "$WORK/$TEACHER"
fi
BS=$WORK/$S/bert-student/checkpoint_best.pt

if wants 2; then
step "6b. setting 2: BERT(student) pruned in one step, then KD from BERT(student)"
todo $S/bert-student.importance.json && run importance$X-bert-student distill-importance \
    --checkpoint $S/bert-student/checkpoint_best.pt --data $R/kd-bin --loss soft_ce \
    --teacher-checkpoint $TEACHER $score_flag --output $S/bert-student.importance.json
todo $S/pruned2/model.pt && run prune$X-2 distill-prune --checkpoint $S/bert-student/checkpoint_best.pt \
    --importance $S/bert-student.importance.json $SHAPE --output $S/pruned2
student s2 $R/kd-bin $S/pruned2 $KD_EPOCHS $KD_ROWS_N $LR $KD --hidden-weight 1 --teacher-checkpoint "$BS"
fi

KD_UPDATES=$(steps $KD_ROWS_N $KD_EPOCHS)
WIDTH="--iterative-pruning width --target-heads 4 --target-ffn-dim 512 --target-embed-rank 128"
WIDTH="$WIDTH --prune-total-updates $KD_UPDATES"

if wants 3; then
step "7. setting 3: BERT(student) cut to 4 layers, then iterative width pruning during KD"
# the embedding factorised at full rank (exact), so that pruning can lower its rank
todo $S/cut3/model.pt && run cut$X-3 distill-prune --checkpoint $S/bert-student/checkpoint_best.pt \
    --num-layers 4 --embed-rank 384 --output $S/cut3
student s3 $R/kd-bin $S/cut3 $KD_EPOCHS $KD_ROWS_N $LR $KD --hidden-weight 1 --teacher-checkpoint "$BS" \
    $WIDTH --prune-period $PERIOD3
fi

if wants 4; then
step "8. setting 4: iterative depth pruning of BERT(student), then iterative width pruning during KD"
todo $S/bs-full/model.pt && run bs-full$X distill-prune --checkpoint $S/bert-student/checkpoint_best.pt \
    --output $S/bs-full
# ROSITA's depth stage: the top layer per step, prediction KD only, BERT(student)'s learning rate
student s4-depth $R/kd-bin $S/bs-full $KD_EPOCHS $KD_ROWS_N 2e-5 $KD --hidden-weight 0 \
    --teacher-checkpoint "$BS" --iterative-pruning depth --target-layers 4 --prune-period $DEPTH_PERIOD \
    --prune-total-updates $KD_UPDATES
todo $S/cut4/model.pt && run cut$X-4 distill-prune --checkpoint $S/s4-depth/checkpoint_best.pt \
    --embed-rank 384 --output $S/cut4
# the 4-layer model is its own teacher for the width stage (ROSITA's teacher assistant)
student s4 $R/kd-bin $S/cut4 $KD_EPOCHS $KD_ROWS_N $LR $KD --hidden-weight 1 \
    --teacher-checkpoint "$WORK/$S/s4-depth/checkpoint_best.pt" $WIDTH --prune-period $PERIOD4
fi

step "9. report: the teacher and every student from raw dev text to labels, on this machine"
rows=()
for k in 1 2 3 4; do wants $k && rows+=(--student "ROSITA setting $k=$S/s$k:$R/kd-bin"); done
rows+=(--student "pruned, gold only=$S/baseline:teacher/data-bin")
if wants 2 || wants 3 || wants 4; then rows+=(--student "BERT(student) 6L=$S/bert-student:$R/copy-bin"); fi
wants 4 && rows+=(--student "depth-pruned BERT(student) 4L=$S/s4-depth:$R/kd-bin")
title="ROSITA on $TASK_NAME (MiniLM teacher)"; [ "$SEED" = 1 ] || title="$title, seed $SEED"
run rosita$X-report python "$REPO/demo/report.py" --dev "$DEV_TSV" --teacher teacher/ckpt $REPORT_FLAGS \
    "${rows[@]}" --output $S/report --title "$title"
last_table "$WORK/logs/rosita$X-report.log"
