#!/usr/bin/env bash
# Sparse distillation on SST-2 with an unlabelled corpus: IMDB's reviews (train and unlabelled;
# never test) split into sentences, SST-2 dev sentences removed, labelled by demo/sst2.sh's
# teacher and added to the 67k training phrases. The DAN is distilled at growing transfer-set
# sizes; the curve of dev accuracy against size goes to corpus/curve.json and corpus/curve.png.
#
#   bash demo/sst2_corpus.sh          # (or demo/sst2.sh --corpus) after demo/sst2.sh: the first 300k sentences
#                                     # labelled; sizes 67k + 0, 100k, 300k (about 90 min on 2 CPU cores)
#   bash demo/sst2_corpus.sh --full   # every sentence labelled (873k; hours on CPU): sizes + 0, 100k, 300k, all
#   bash demo/sst2_corpus.sh --smoke  # after demo/sst2.sh --smoke: the same steps on a few hundred reviews
#
# Runs demo/sst2.sh first if its teacher is missing. Steps already done are skipped on rerun;
# each step's log is in WORK/logs/. Environment: DATA (SST-2), IMDB (the imdb dir), WORK.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DATA=${DATA:-$REPO/../shared/data/glue/SST-2}
IMDB=${IMDB:-$REPO/../shared/data/imdb}
BASE=${WORK:-$REPO/demo/work/sst2}
MODE=default
case ${1:-} in
    "") ;;
    --smoke) MODE=smoke ;;
    --full) MODE=full ;;
    *) echo "unknown option: $1 (use --full or --smoke)" >&2; exit 2 ;;
esac
WORK=$BASE
source "$REPO/demo/lib.sh"
after_main_demo "teacher, its logits on train and dev"
LABEL_DICT="$REPO/data-bin-templates/sst2-binary/label/dict.txt"

# SIZES: corpus sentences added to the training phrases (ALL: every labelled one); SEEDS at the
# largest; LABEL: how many sentences the teacher labels (empty: all; labelling is the long step on CPU)
REVIEWS=""; SIZES="0 100000 300000"; SEEDS="1 2 3"; FEATURES=1000000; BATCH=64; LR=1e-3; LABEL=300000
SPEED=""  # the curve times every DAN against the main demo's (3 rounds of 1 s each by default)
C=corpus
case $MODE in
    smoke) REVIEWS=60; SIZES="0 300 ALL"; SEEDS="1 2"; FEATURES=20000; LABEL=""; SPEED="--speed-rounds 1 --seconds 0.2" ;;
    full) SIZES="0 100000 300000 ALL"; LABEL=""; C=corpus-full ;;
esac
# the main demo's DAN (demo/sst2.sh step 9), over this run's vocabulary
DAN="--arch feature_based_linear_model --encoder-embed-dim 384 --embed-init teacher/base/model.pt"
DAN="$DAN --hidden-dim 128 --head-layers 3 --pooler-activation-fn relu --pooler-dropout 0.2"
mkdir -p corpus $C
ROWS=$(wc -l < train.txt)
SPLIT=corpus  # the sentences of the reviews, shared by the default and --full runs

step "c1. IMDB reviews (train and unlabelled) to unique sentences, SST-2 dev sentences excluded"
if todo $SPLIT/sentences.txt; then
    lines="tail -n +2"; [ -n "$REVIEWS" ] && lines="sed -n 2,$((REVIEWS + 1))p"
    $lines "$IMDB/train.tsv" | cut -f1 > $SPLIT/imdb-train.txt.part && mv $SPLIT/imdb-train.txt.part $SPLIT/imdb-train.txt
    unsup=$IMDB/unsup.txt
    if [ -n "$REVIEWS" ]; then sed -n "1,${REVIEWS}p" "$unsup" > $SPLIT/unsup.txt; unsup=$SPLIT/unsup.txt; fi
    run split-sentences distill-split-sentences --input $SPLIT/imdb-train.txt "$unsup" --output $SPLIT/sentences.txt \
        --exclude dev.txt --workers 2
fi
cat $SPLIT/sentences.txt.json
SENTENCES=$SPLIT/sentences.txt
if [ -n "$LABEL" ]; then  # the first LABEL sentences (IMDB train's reviews come first, then unlabelled ones)
    SENTENCES=$C/sentences-$LABEL.txt
    if todo $SENTENCES; then sed -n "1,${LABEL}p" $SPLIT/sentences.txt > $SENTENCES.part; mv $SENTENCES.part $SENTENCES; fi
fi
TOTAL=$(wc -l < $SENTENCES)
LOGITS=${SENTENCES%.txt}.npy  # beside its sentences: --full reuses the labelling of every sentence

step "c2. the teacher labels the $TOTAL sentences"
todo $LOGITS && run corpus-logits-$TOTAL distill-teacher-logits --checkpoint-dir teacher/ckpt \
    --input $SENTENCES --output $LOGITS

step "c3. n-gram vocabulary over phrases + sentences (1-4-grams, top $FEATURES), features of both and of dev"
if todo $C/transfer.txt; then cat train.txt $SENTENCES > $C/transfer.txt.part; mv $C/transfer.txt.part $C/transfer.txt; fi
todo $C/vocab.txt && run corpus-ngram-dict distill-ngram-dict --input $C/transfer.txt --output $C/vocab.txt \
    --ngram-range 1 4 --max-features $FEATURES --workers 2
for f in transfer dev; do
    src=$C/transfer.txt; [ $f = dev ] && src=dev.txt
    todo $C/$f.ngrams && run corpus-ngrams-$f distill-extract-ngrams --vocab $C/vocab.txt --input $src \
        --output $C/$f.ngrams --workers 2
done

size_rows() { [ "$1" = ALL ] && echo $TOTAL || echo $(( $1 < TOTAL ? $1 : TOTAL )); }

databin() {  # databin N: the 67k phrases + the first N corpus sentences, teacher logits for all
    local n=$1 d=$C/bin-$1
    todo $d/distill/valid.npy || return 0
    rm -rf $d; mkdir -p $d
    head -n $((ROWS + n)) $C/transfer.ngrams > $d/train.ngrams
    run corpus-bin-$1-input fairseq-preprocess --only-source --srcdict $C/vocab.txt --trainpref $d/train.ngrams \
        --validpref $C/dev.ngrams --destdir $d/input0 --workers 2
    rm $d/train.ngrams
    cp $C/vocab.txt.json $d/input0/ngrams.json
    # no gold labels for the sentences: the train split learns from the teacher alone
    run corpus-bin-$1-label fairseq-preprocess --only-source --srcdict "$LABEL_DICT" --validpref dev.label \
        --destdir $d/label --workers 2
    run corpus-bin-$1-logits python -c "
import json, sys, numpy as np
from user_dir.data.teacher_targets import class_order_path, save_teacher_targets
a, b, n, dst = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
classes = json.load(open(class_order_path(a)))['classes']
assert json.load(open(class_order_path(b)))['classes'] == classes, 'class orders differ'
rows = np.concatenate([np.load(a), np.load(b, mmap_mode='r')[:n]])
save_teacher_targets(dst, rows, classes, made_from=[a, f'{b} (first {n} rows)'])
" teacher/train.npy $LOGITS $n $d/distill/train.npy
    cp teacher/dev.json $d/distill/valid.json; cp teacher/dev.npy $d/distill/valid.npy  # last: marks it whole
}

dan() {  # dan N SEED: the DAN on the phrases + N sentences
    local n=$1 seed=$2 rows=$((ROWS + $1)) epochs=4 save=$C/dan-$1-seed$2
    [ $1 -gt 0 ] && epochs=3  # the larger sets: fewer passes, as many updates or more
    [ $MODE = smoke ] && epochs=1
    train corpus-dan-$1-seed$2 $save fairseq-train $C/bin-$1 --user-dir "$REPO/user_dir" \
        --task feature_based_sentence_prediction --distillation-target --num-classes 2 \
        $DAN --criterion distillation --distillation-alpha 1.0 --seed $seed \
        --optimizer mixed_adam --adam-betas '(0.9, 0.98)' --adam-eps 1e-6 --weight-decay 0.01 \
        --lr $LR --lr-scheduler polynomial_decay --warmup-updates 200 \
        --total-num-update $(( (rows / BATCH + 1) * epochs )) --batch-size $BATCH --max-epoch $epochs \
        --feature-dropout 0.4 --num-workers 0 --best-checkpoint-metric accuracy --maximize-best-checkpoint-metric \
        --save-dir $save --no-epoch-checkpoints --log-format simple --log-interval 1000
}

points=()
last=${SIZES##* }
for size in $SIZES; do
    n=$(size_rows $size)
    step "c4. transfer set: $ROWS phrases + $n sentences"
    databin $n
    seeds=1; [ "$size" = "$last" ] && seeds=$SEEDS
    for seed in $seeds; do
        dan $n $seed
        points+=("$n:$C/dan-$n-seed$seed:$C/bin-$n")
    done
done

step "c5. the curve: dev accuracy (raw text to label) against transfer-set size"
todo $C/curve.json && run corpus-curve python "$REPO/demo/curve.py" --dev "$DEV_TSV" --teacher teacher/ckpt \
    --base-rows $ROWS --output $C/curve \
    --reference checkpoints:data-bin $SPEED "${points[@]}"
cat $C/curve.json
