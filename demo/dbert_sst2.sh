#!/usr/bin/env bash
# D-BERT on SST-2 (Tang et al. 2019): rule-based augmentation grows the labelled set the teacher
# of demo/sst2.sh was fine-tuned on; the teacher labels the grown transfer set; a BiLSTM and the
# DAN learn from it. The report compares the teacher, a BiLSTM on gold labels, and the BiLSTM
# and DAN distilled without and with augmentation.
#
#   bash demo/dbert_sst2.sh              # the teacher's 20k labelled phrases, 10 draws each
#   bash demo/dbert_sst2.sh --all-train  # then again with all 67k train phrases, 4 draws each
#   bash demo/dbert_sst2.sh --full       # after demo/sst2.sh --full (all of train labelled), 20 draws
#   bash demo/dbert_sst2.sh --smoke      # after demo/sst2.sh --smoke: the same steps, tiny settings
#
# Runs demo/sst2.sh first if its teacher is missing. Steps already done are skipped on rerun;
# each step's full log is in WORK/logs/. Environment: DATA, WORK (shared with demo/sst2.sh).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DATA=${DATA:-$REPO/../shared/data/glue/SST-2}
BASE=${WORK:-$REPO/demo/work/sst2}
MODE=default; ALL=0
for arg in "$@"; do
    case $arg in
        --full) MODE=full ;;
        --smoke) MODE=smoke ;;
        --all-train) ALL=1 ;;
        *) echo "unknown option: $arg (use --all-train, --full or --smoke)" >&2; exit 2 ;;
    esac
done
WORK=$BASE; [ $MODE = full ] && WORK=${BASE%/}-full
source "$REPO/demo/lib.sh"

after_main_demo "teacher, its logits, n-gram vocabulary"
AUG_DAN_EPOCHS=4; [ $MODE = smoke ] && AUG_DAN_EPOCHS=1
TOKENIZER=teacher/base/tokenizer.json
LABEL_DICT="$REPO/data-bin-templates/sst2-binary/label/dict.txt"

encode() {  # encode PREFIX: PREFIX.txt -> PREFIX.bpe in the teacher's WordPiece tokens
    todo $1.bpe || return 0
    run "encode-${1//\//-}" distill-bpe-encode --bpe wordpiece --wordpiece-vocab $TOKENIZER \
        --input $1.txt --output $1.bpe
}

binarize() {  # binarize DEST SOURCE-PREFIX FEATURES LOGITS.npy [GOLD-LABELS]: a data-bin with dev as valid
    local dest=$1 src=$2 feats=$3 logits=$4 gold=${5:-}
    todo $dest/distill/valid.npy || return 0
    local name=${dest//\//-}
    # the main demo's encodings of dev: teacher/dev.bpe (WordPiece) and dev.ngrams
    local dict=teacher/base/dict.txt dev=teacher/dev.bpe
    [ $feats = ngrams ] && { dict=vocab.txt; dev=dev.ngrams; }
    rm -rf $dest
    run $name-input fairseq-preprocess --only-source --srcdict $dict --trainpref $src.$feats --validpref $dev \
        --destdir $dest/input0 --workers 2
    [ $feats = ngrams ] && cp vocab.txt.json $dest/input0/ngrams.json
    if [ -n "$gold" ]; then
        run $name-label fairseq-preprocess --only-source --srcdict "$LABEL_DICT" --trainpref $gold \
            --validpref dev.label --destdir $dest/label --workers 2
    else  # augmented rows have no gold label: the train split learns from the teacher alone
        run $name-label fairseq-preprocess --only-source --srcdict "$LABEL_DICT" --validpref dev.label \
            --destdir $dest/label --workers 2
    fi
    mkdir -p $dest/distill
    # each class order before its logits; valid.npy last: it marks the data-bin as whole
    cp ${logits%.npy}.json $dest/distill/train.json; cp $logits $dest/distill/train.npy
    cp teacher/dev.json $dest/distill/valid.json; cp teacher/dev.npy $dest/distill/valid.npy
}


bilstm() {  # bilstm DATA SAVE EPOCHS [flags]: the D-BERT BiLSTM, embeddings from the teacher's
    local data=$1 save=$2 epochs=$3; shift 3
    [ -e $save/done ] && return
    train ${save//\//-} $save fairseq-train $data --user-dir "$REPO/user_dir" --task glue_distillation --num-classes 2 \
        --arch bilstm_classifier --encoder-embed-dim 384 --embed-init teacher/base/model.pt \
        --lstm-hidden-size 150 --hidden-dim 200 --pooling final \
        --criterion distillation --optimizer mixed_adam --lr 1e-3 --batch-size 64 --max-epoch $epochs \
        --bpe wordpiece --wordpiece-vocab "$WORK/$TOKENIZER" --num-workers 0 \
        --best-checkpoint-metric accuracy --maximize-best-checkpoint-metric \
        --save-dir $save --no-epoch-checkpoints --log-format simple --log-interval 500 "$@"
    touch $save/done
}

dan() {  # dan DATA SAVE EPOCHS FEATURE-DROPOUT ROWS: the DAN of demo/sst2.sh
    local data=$1 save=$2 epochs=$3 dropout=$4 rows=$5
    [ -e $save/done ] && return
    train ${save//\//-} $save fairseq-train $data --user-dir "$REPO/user_dir" \
        --task feature_based_sentence_prediction --distillation-target --num-classes 2 \
        --arch feature_based_linear_model --encoder-embed-dim 256 --hidden-dim 256 --pooler-dropout 0.3 \
        --criterion distillation --optimizer mixed_adam --adam-betas '(0.9, 0.98)' --adam-eps 1e-6 \
        --weight-decay 0.01 --lr 1e-3 --lr-scheduler polynomial_decay --warmup-updates 200 \
        --total-num-update $(( (rows / 64 + 1) * epochs )) --batch-size 64 --max-epoch $epochs \
        --feature-dropout $dropout --best-checkpoint-metric accuracy --maximize-best-checkpoint-metric \
        --save-dir $save --no-epoch-checkpoints --log-format simple --log-interval 1000
    touch $save/done
}

transfer() {  # transfer NAME TEXT LABELS SAMPLES EPOCHS AUG_EPOCHS DAN_EPOCHS: every model on one transfer set
    local name=$1 text=$2 labels=$3 samples=$4 epochs=$5 aug_epochs=$6 dan_epochs=$7
    local D=dbert/$name
    mkdir -p $D
    [ -s $D/train.label ] || { cp $text $D/train.txt; cp $labels $D/train.label; }
    local n
    n=$(wc -l < $D/train.txt)

    step "$name 1. augment $n phrases: originals, then up to $samples new versions of each (D-BERT rules)"
    todo $D/train.aug.txt && run $name-augment distill-augment --input $D/train.txt --output $D/train.aug.txt \
        --samples-per-example $samples --p-mask 0.1 --p-pos 0.1 --p-ngram 0.25 --ngram-max 5 --seed 1 --workers 2
    wc -l $D/train.aug.txt
    sed -n "$((n + 1)),$((n + 5))p" $D/train.aug.txt

    step "$name 2. the teacher labels the augmented set (its first $n rows label the originals)"
    todo $D/train.aug.npy && run $name-logits distill-teacher-logits --checkpoint-dir teacher/ckpt \
        --input $D/train.aug.txt --output $D/train.aug.npy
    slice_logits $D/train.aug.npy $D/train.npy $n

    step "$name 3. data-bins: WordPiece tokens (BiLSTM) and n-grams of demo/sst2.sh's vocabulary (DAN)"
    for f in $D/train $D/train.aug; do
        encode $f
        todo $f.ngrams && run ngrams-${f//\//-} distill-extract-ngrams --vocab vocab.txt --input $f.txt \
            --output $f.ngrams --workers 2
    done
    binarize $D/bin $D/train bpe $D/train.npy $D/train.label
    binarize $D/bin-aug $D/train.aug bpe $D/train.aug.npy
    binarize $D/dan-bin $D/train ngrams $D/train.npy
    binarize $D/dan-bin-aug $D/train.aug ngrams $D/train.aug.npy

    step "$name 4. BiLSTM on gold labels only (cross-entropy, $epochs epochs)"
    bilstm $D/bin $D/bilstm-gold $epochs
    step "$name 5. BiLSTM distilled from the teacher's logits ($epochs epochs)"
    bilstm $D/bin $D/bilstm-kd $epochs --distillation-target
    step "$name 6. BiLSTM distilled on the augmented set ($aug_epochs epochs)"
    bilstm $D/bin-aug $D/bilstm-kd-aug $aug_epochs --distillation-target
    step "$name 7. DAN distilled without ($dan_epochs epochs) and with augmentation ($AUG_DAN_EPOCHS epochs)"
    dan $D/dan-bin $D/dan-kd $dan_epochs 0.4 $n
    dan $D/dan-bin-aug $D/dan-kd-aug $AUG_DAN_EPOCHS 0.2 $(wc -l < $D/train.aug.txt)

    step "$name 8. report: every model from raw dev text to labels, on this machine"
    run $name-report python "$REPO/demo/report.py" --dev "$DEV_TSV" --teacher teacher/ckpt \
        --student "BiLSTM gold=$D/bilstm-gold:$D/bin" \
        --student "BiLSTM KD=$D/bilstm-kd:$D/bin" \
        --student "BiLSTM KD+aug=$D/bilstm-kd-aug:$D/bin-aug" \
        --student "DAN KD=$D/dan-kd:$D/dan-bin" \
        --student "DAN KD+aug=$D/dan-kd-aug:$D/dan-bin-aug" \
        --output $D/report --title "D-BERT on SST-2 ($name): augmentation, BiLSTM and DAN"
    last_table "$WORK/logs/$name-report.log"
}

# the labelled set: the phrases the teacher was fine-tuned on (demo/sst2.sh step 3)
case $MODE in
    full) transfer labelled teacher/ft.txt teacher/ft.label 20 6 4 8 ;;
    smoke) transfer labelled teacher/ft.txt teacher/ft.label 2 1 1 1 ;;
    *) transfer labelled teacher/ft.txt teacher/ft.label 10 8 3 8 ;;
esac
# all train phrases, most of which the teacher never saw with a label: in-domain unlabelled text
if [ $ALL = 1 ] && [ $MODE != full ]; then
    if [ $MODE = smoke ]; then transfer all-train train.txt train.label 1 1 1 1
    else transfer all-train train.txt train.label 4 3 3 4; fi
fi
exit 0
