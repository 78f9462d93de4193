#!/usr/bin/env bash
# Sentence pairs end to end on MRPC: the teacher (all-MiniLM-L6-v2 fine-tuned on pairs) labels
# the pairs and their augmentations (one side or both changed); the siamese BiLSTM and the
# DAN bi-encoder learn from its logits. The report gives accuracy and F1 of each model.
#
#   bash demo/mrpc.sh        # about 20 minutes on 2 CPU cores
#
# Steps already done are skipped on rerun. Environment: DATA (GLUE MRPC dir), WORK, WEIGHTS.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DATA=${DATA:-$REPO/../shared/data/glue/MRPC}
WORK=${WORK:-$REPO/demo/work/mrpc}
WEIGHTS=${WEIGHTS:-$REPO/.cache/weights/all-MiniLM-L6-v2}
export PATH="$REPO/.venv/bin:$PATH"
mkdir -p "$WORK"
cd "$WORK"
step() { echo; echo "== $*"; }
SAMPLES=4
label_dict="$REPO/data-bin-templates/sst2-binary/label/dict.txt"  # classes 0 and 1, as MRPC's

step "1. pairs and labels (header, with its byte-order mark, dropped)"
for split in train dev; do
    if [ ! -s $split.label ]; then
        tail -n +2 "$DATA/$split.tsv" | cut -f4,5 > $split.pairs.tsv
        tail -n +2 "$DATA/$split.tsv" | cut -f1 > $split.label
    fi
    wc -l $split.pairs.tsv
done

step "2. import the teacher and WordPiece-encode both sides"
[ -s teacher/base/model.pt ] || distill-import-hf --hf-dir "$WEIGHTS" --output teacher/base
TOKENIZER=$WORK/teacher/base/tokenizer.json
encode_pairs() {  # encode_pairs NAME: NAME.pairs.tsv -> NAME.{a,b}.txt and NAME.{a,b}.bpe
    cut -f1 $1.pairs.tsv > $1.a.txt; cut -f2 $1.pairs.tsv > $1.b.txt
    for side in a b; do
        distill-bpe-encode --bpe wordpiece --wordpiece-vocab $TOKENIZER --input $1.$side.txt --output $1.$side.bpe
    done
}
for split in train dev; do [ -s $split.b.bpe ] || encode_pairs $split; done

step "3. fine-tune the teacher on pairs: [CLS] a [SEP] b [SEP], as BERT"
if [ ! -s teacher/data-bin/label/valid.idx ]; then
    for k in 0 1; do
        side=$([ $k = 0 ] && echo a || echo b)
        fairseq-preprocess --only-source --srcdict teacher/base/dict.txt --trainpref train.$side.bpe \
            --validpref dev.$side.bpe --destdir teacher/data-bin/input$k --workers 2
    done
    fairseq-preprocess --only-source --srcdict "$label_dict" --trainpref train.label --validpref dev.label \
        --destdir teacher/data-bin/label --workers 2
fi
EPOCHS=3; UPDATES=$(( (3668 / 32 + 1) * EPOCHS ))
fairseq-train "$WORK/teacher/data-bin" --user-dir "$REPO/user_dir" \
    --finetune-from-model "$WORK/teacher/base/model.pt" $(cat teacher/base/model-args.txt) \
    --task sentence_prediction --num-classes 2 --init-token 0 --max-positions 512 \
    --criterion sentence_prediction \
    --optimizer adam --adam-betas '(0.9, 0.98)' --adam-eps 1e-6 --weight-decay 0.1 \
    --lr 5e-5 --lr-scheduler polynomial_decay --warmup-updates $(( UPDATES / 10 )) --total-num-update $UPDATES \
    --batch-size 32 --max-epoch $EPOCHS --num-workers 0 \
    --bpe wordpiece --wordpiece-vocab "$TOKENIZER" \
    --best-checkpoint-metric accuracy --maximize-best-checkpoint-metric \
    --save-dir teacher/ckpt --no-epoch-checkpoints \
    --log-format simple --log-interval 50 2>&1 | tee teacher/train.log | grep -E "valid on|done training" || true
[ -s teacher/ckpt/checkpoint_best.pt ] || { echo "teacher training failed: see teacher/train.log" >&2; exit 1; }

step "4. augment the pairs (originals first; one side or both changed) and label everything"
[ -s train.aug.pairs.tsv ] || distill-augment --input train.pairs.tsv --output train.aug.pairs.tsv \
    --input-format tsv --text-column 0 1 --samples-per-example $SAMPLES --workers 2
wc -l train.aug.pairs.tsv
[ -s train.aug.b.bpe ] || encode_pairs train.aug
for name in train.aug dev; do
    [ -s teacher/$name.npy ] || distill-teacher-logits --checkpoint-dir teacher/ckpt --input $name.pairs.tsv \
        --input-format tsv --text-column 0 1 --output teacher/$name.npy
done

step "5. the siamese BiLSTM on the teacher's tokens"
if [ ! -s bilstm-bin/distill/valid.npy ]; then
    for k in 0 1; do
        side=$([ $k = 0 ] && echo a || echo b)
        fairseq-preprocess --only-source --srcdict teacher/base/dict.txt --trainpref train.aug.$side.bpe \
            --validpref dev.$side.bpe --destdir bilstm-bin/input$k --workers 2
    done
    fairseq-preprocess --only-source --srcdict "$label_dict" --validpref dev.label --destdir bilstm-bin/label
    mkdir -p bilstm-bin/distill
    cp teacher/train.aug.npy bilstm-bin/distill/train.npy; cp teacher/train.aug.json bilstm-bin/distill/train.json
    cp teacher/dev.npy bilstm-bin/distill/valid.npy; cp teacher/dev.json bilstm-bin/distill/valid.json
fi
fairseq-train bilstm-bin --user-dir "$REPO/user_dir" --task glue_distillation --num-classes 2 \
    --distillation-target --arch bilstm_dbert_siamese --encoder-embed-dim 384 \
    --embed-init teacher/base/model.pt --criterion distillation --optimizer mixed_adam --lr 1e-3 \
    --batch-size 32 --max-epoch 3 --bpe wordpiece --wordpiece-vocab "$TOKENIZER" --num-workers 0 \
    --best-checkpoint-metric accuracy --maximize-best-checkpoint-metric \
    --save-dir bilstm --no-epoch-checkpoints --log-format simple --log-interval 200 \
    2>&1 | tee bilstm.log | grep -E "valid on|done training" || true

step "6. the DAN bi-encoder on n-grams of both sides"
[ -s vocab.txt ] || { cat train.aug.a.txt train.aug.b.txt > ngram-corpus.txt
    distill-ngram-dict --input ngram-corpus.txt --output vocab.txt --ngram-range 1 3 --max-features 300000 --workers 2; }
if [ ! -s dan-bin/distill/valid.npy ]; then
    for k in 0 1; do
        side=$([ $k = 0 ] && echo a || echo b)
        for split in train.aug dev; do
            distill-extract-ngrams --vocab vocab.txt --input $split.$side.txt --output $split.$side.ngrams --workers 2
        done
        fairseq-preprocess --only-source --srcdict vocab.txt --trainpref train.aug.$side.ngrams \
            --validpref dev.$side.ngrams --destdir dan-bin/input$k --workers 2
    done
    cp vocab.txt.json dan-bin/input0/ngrams.json
    cp -r bilstm-bin/label bilstm-bin/distill dan-bin/
fi
fairseq-train dan-bin --user-dir "$REPO/user_dir" --task feature_based_sentence_pair_prediction \
    --distillation-target --num-classes 2 --arch feature_based_linear_biencoder_model \
    --encoder-embed-dim 128 --hidden-dim 128 --pooler-dropout 0.3 --feature-dropout 0.2 \
    --criterion distillation --optimizer mixed_adam --lr 1e-3 --batch-size 32 --max-epoch 6 \
    --best-checkpoint-metric accuracy --maximize-best-checkpoint-metric \
    --save-dir dan --no-epoch-checkpoints --log-format simple --log-interval 200 \
    2>&1 | tee dan.log | grep -E "valid on|done training" || true

step "7. report: accuracy and F1 from raw dev pairs"
python "$REPO/demo/report.py" --dev "$DATA/dev.tsv" --text-column 3 4 --label-column 0 \
    --teacher teacher/ckpt --student "BiLSTM siamese KD+aug=bilstm:bilstm-bin" \
    --student "DAN bi-encoder KD+aug=dan:dan-bin" --output report --title "Distillation on MRPC (pairs)"
