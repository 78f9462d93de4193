#!/usr/bin/env bash
# D-BERT on SST-2 (Tang et al. 2019): the teacher of demo/sst2.sh labels a transfer set grown
# by rule-based augmentation; a BiLSTM and the DAN learn from it. The report compares the
# teacher, a BiLSTM on gold labels, and the BiLSTM and DAN distilled without and with augmentation.
#
#   bash demo/dbert_sst2.sh           # runs demo/sst2.sh first if its teacher is missing
#   bash demo/dbert_sst2.sh --full    # 20 samples per example (the paper's n_iter), more epochs
#
# Steps already done are skipped on rerun. Environment: DATA, WORK (shared with demo/sst2.sh).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DATA=${DATA:-$REPO/../shared/data/glue/SST-2}
BASE=${WORK:-$REPO/demo/work/sst2}
FULL=0; WORK=$BASE
[ "${1:-}" = "--full" ] && { FULL=1; WORK=${BASE%/}-full; }
export PATH="$REPO/.venv/bin:$PATH"
step() { echo; echo "== $*"; }

# the teacher, its logits on train and dev, and the DAN without augmentation
if [ ! -s "$WORK/report.json" ]; then
    step "0. the sparse-distillation demo first (teacher, logits, DAN)"
    WORK=$BASE DATA=$DATA bash "$REPO/demo/sst2.sh" "$@"
fi
cd "$WORK"
mkdir -p dbert
if [ $FULL = 1 ]; then SAMPLES=20; EPOCHS=6; AUG_EPOCHS=4; else SAMPLES=4; EPOCHS=3; AUG_EPOCHS=3; fi
TOKENIZER=teacher/base/tokenizer.json
NTRAIN=$(wc -l < train.txt)

step "1. augment the transfer set: originals, then up to $SAMPLES new versions of each (D-BERT rules)"
[ -s dbert/train.aug.txt ] || distill-augment --input train.txt --output dbert/train.aug.txt \
    --samples-per-example $SAMPLES --p-mask 0.1 --p-pos 0.1 --p-ngram 0.25 --ngram-max 5 --seed 1 --workers 2
wc -l dbert/train.aug.txt
sed -n "$((NTRAIN + 1)),$((NTRAIN + 5))p" dbert/train.aug.txt

step "2. the teacher labels the augmented set"
[ -s dbert/train.aug.npy ] || distill-teacher-logits --checkpoint-dir teacher/ckpt \
    --input dbert/train.aug.txt --output dbert/train.aug.npy

step "3. BiLSTM data: the teacher's WordPiece tokens and dictionary"
for f in train dev dbert/train.aug; do
    [ -s $f.bpe ] || distill-bpe-encode --bpe wordpiece --wordpiece-vocab $TOKENIZER --input $f.txt --output $f.bpe
done
label_dict="$REPO/data-bin-templates/sst2-binary/label/dict.txt"
if [ ! -s dbert/bin/distill/valid.npy ]; then
    # the plain transfer set: gold labels and teacher logits for train and dev
    fairseq-preprocess --only-source --srcdict teacher/base/dict.txt --trainpref train.bpe --validpref dev.bpe \
        --destdir dbert/bin/input0 --workers 2
    fairseq-preprocess --only-source --srcdict "$label_dict" --trainpref train.label --validpref dev.label \
        --destdir dbert/bin/label --workers 2
    mkdir -p dbert/bin/distill
    cp teacher/train.npy teacher/train.json dbert/bin/distill/
    cp teacher/dev.npy dbert/bin/distill/valid.npy; cp teacher/dev.json dbert/bin/distill/valid.json
fi
if [ ! -s dbert/bin-aug/distill/valid.npy ]; then
    # the augmented set: teacher logits only (new rows have no gold label); gold for dev
    fairseq-preprocess --only-source --srcdict teacher/base/dict.txt --trainpref dbert/train.aug.bpe \
        --validpref dev.bpe --destdir dbert/bin-aug/input0 --workers 2
    fairseq-preprocess --only-source --srcdict "$label_dict" --validpref dev.label \
        --destdir dbert/bin-aug/label --workers 2
    mkdir -p dbert/bin-aug/distill
    cp dbert/train.aug.npy dbert/bin-aug/distill/train.npy; cp dbert/train.aug.json dbert/bin-aug/distill/train.json
    cp teacher/dev.npy dbert/bin-aug/distill/valid.npy; cp teacher/dev.json dbert/bin-aug/distill/valid.json
fi

bilstm() {  # bilstm DATA SAVE EPOCHS [flags]: the D-BERT BiLSTM, embeddings from the teacher's
    local data=$1 save=$2 epochs=$3; shift 3
    [ -s $save/done ] && { grep -E "best_accuracy" $save/train.log | tail -1 | grep -oE "best_accuracy [0-9.]+"; return; }
    fairseq-train $data --user-dir "$REPO/user_dir" --task glue_distillation --num-classes 2 \
        --arch bilstm_classifier --encoder-embed-dim 384 --embed-init teacher/base/model.pt \
        --lstm-hidden-size 150 --hidden-dim 200 --pooling final \
        --criterion distillation --optimizer mixed_adam --lr 1e-3 --batch-size 64 --max-epoch $epochs \
        --bpe wordpiece --wordpiece-vocab "$WORK/$TOKENIZER" --num-workers 0 \
        --best-checkpoint-metric accuracy --maximize-best-checkpoint-metric \
        --save-dir $save --no-epoch-checkpoints --log-format simple --log-interval 500 "$@" \
        2>&1 | tee $save.log | grep -E "valid on|done training" || true
    [ -s $save/checkpoint_best.pt ] || { echo "training failed: see $save.log" >&2; exit 1; }
    mkdir -p $save; mv $save.log $save/train.log; touch $save/done
}

step "4. BiLSTM on gold labels only (cross-entropy)"
bilstm dbert/bin dbert/bilstm-gold $EPOCHS

step "5. BiLSTM distilled from the teacher's logits (no augmentation)"
bilstm dbert/bin dbert/bilstm-kd $EPOCHS --distillation-target

step "6. BiLSTM distilled on the augmented set"
bilstm dbert/bin-aug dbert/bilstm-kd-aug $AUG_EPOCHS --distillation-target

step "7. DAN distilled on the augmented set (the vocabulary of demo/sst2.sh)"
[ -s dbert/train.aug.ngrams ] || distill-extract-ngrams --vocab vocab.txt --input dbert/train.aug.txt \
    --output dbert/train.aug.ngrams --workers 2
if [ ! -s dbert/dan-bin-aug/distill/valid.npy ]; then
    fairseq-preprocess --only-source --srcdict vocab.txt --trainpref dbert/train.aug.ngrams \
        --validpref dev.ngrams --destdir dbert/dan-bin-aug/input0 --workers 2
    cp vocab.txt.json dbert/dan-bin-aug/input0/ngrams.json
    cp -r dbert/bin-aug/label dbert/bin-aug/distill dbert/dan-bin-aug/
fi
NAUG=$(wc -l < dbert/train.aug.txt)
if [ ! -s dbert/dan-kd-aug/done ]; then
    fairseq-train dbert/dan-bin-aug --user-dir "$REPO/user_dir" \
        --task feature_based_sentence_prediction --distillation-target --num-classes 2 \
        --arch feature_based_linear_model --encoder-embed-dim 256 --hidden-dim 256 --pooler-dropout 0.3 \
        --criterion distillation --optimizer mixed_adam --adam-betas '(0.9, 0.98)' --adam-eps 1e-6 \
        --weight-decay 0.01 --lr 1e-3 --lr-scheduler polynomial_decay --warmup-updates 200 \
        --total-num-update $(( (NAUG / 64 + 1) * 4 )) --batch-size 64 --max-epoch 4 --feature-dropout 0.2 \
        --best-checkpoint-metric accuracy --maximize-best-checkpoint-metric \
        --save-dir dbert/dan-kd-aug --no-epoch-checkpoints --log-format simple --log-interval 1000 \
        2>&1 | tee dbert/dan-kd-aug.log | grep -E "valid on|done training" || true
    [ -s dbert/dan-kd-aug/checkpoint_best.pt ] || { echo "training failed: see dbert/dan-kd-aug.log" >&2; exit 1; }
    mv dbert/dan-kd-aug.log dbert/dan-kd-aug/train.log; touch dbert/dan-kd-aug/done
fi

step "8. report: every model from raw dev text to labels, on this machine"
python "$REPO/demo/report.py" --dev "$DATA/dev.tsv" --teacher teacher/ckpt \
    --student "BiLSTM gold=dbert/bilstm-gold:dbert/bin" \
    --student "BiLSTM KD=dbert/bilstm-kd:dbert/bin" \
    --student "BiLSTM KD+aug=dbert/bilstm-kd-aug:dbert/bin-aug" \
    --student "DAN KD=checkpoints:data-bin" \
    --student "DAN KD+aug=dbert/dan-kd-aug:dbert/dan-bin-aug" \
    --output dbert/report --title "D-BERT on SST-2: augmentation, BiLSTM and DAN students"
