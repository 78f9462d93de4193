#!/usr/bin/env bash
# Sparse distillation on SST-2 (Ye et al., NAACL 2022), every step a plain command:
# a BERT teacher (all-MiniLM-L6-v2, imported from Hugging Face and fine-tuned with
# fairseq) labels the transfer set; a DAN over n-grams learns from its logits.
#
#   bash demo/sst2.sh            # defaults: about 12 minutes on 2 CPU cores
#   bash demo/sst2.sh --full     # teacher on all of train (2 epochs), paper-size DAN: hours on CPU
#
# Steps already done are skipped on rerun; fairseq-train resumes from its last
# checkpoint. Environment: DATA (GLUE SST-2 dir), WORK (output dir), WEIGHTS (HF dir).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DATA=${DATA:-$REPO/../shared/data/glue/SST-2}
WORK=${WORK:-$REPO/demo/work/sst2}
WEIGHTS=${WEIGHTS:-$REPO/.cache/weights/all-MiniLM-L6-v2}
FULL=0
[ "${1:-}" = "--full" ] && { FULL=1; WORK=${WORK%/}-full; }
export PATH="$REPO/.venv/bin:$PATH"
mkdir -p "$WORK"
cd "$WORK"
step() { echo; echo "== $*"; }

# The DAN overfits a transfer set this small (67k phrases; the paper used millions
# of reviews) after 2-4 epochs: strong feature and head dropout, few epochs.
if [ $FULL = 1 ]; then
    FT_EXAMPLES=67349; FT_EPOCHS=2; DAN="--arch dan_paper --pooler-dropout 0.3"; EPOCHS=8; BATCH=128; LR=5e-4
else
    # the n-gram table starts at the teacher's input embeddings (mean over each n-gram's WordPieces);
    # three 128-unit ReLU layers over the average, as in Iyyer et al.'s DAN (+1.2 points over one
    # 384-unit tanh layer, mean of 3 seeds), dropout 0.2 after each.  For prediction the first
    # layer folds into the table, which shrinks to 128 columns.
    FT_EXAMPLES=20000; FT_EPOCHS=1
    DAN="--arch feature_based_linear_model --encoder-embed-dim 384 --embed-init teacher/base/model.pt"
    DAN="$DAN --hidden-dim 128 --head-layers 3 --pooler-activation-fn relu --pooler-dropout 0.2"
    EPOCHS=4; BATCH=64; LR=1e-3
fi

step "1. raw text and labels (header dropped; one example per line)"
for split in train dev; do
    if [ ! -s "$split.label" ]; then
        tail -n +2 "$DATA/$split.tsv" | cut -f1 > "$split.txt"
        tail -n +2 "$DATA/$split.tsv" | cut -f2 > "$split.label"
    fi
    wc -l "$split.txt"
done

step "2. import the Hugging Face teacher into fairseq"
[ -s teacher/base/model.pt ] || distill-import-hf --hf-dir "$WEIGHTS" --output teacher/base

step "3. teacher data: WordPiece-encode, binarize ($FT_EXAMPLES training examples)"
if [ ! -s teacher/data-bin/label/valid.idx ]; then
    head -n $FT_EXAMPLES train.txt > teacher/ft.txt
    head -n $FT_EXAMPLES train.label > teacher/ft.label
    for split in ft dev; do
        src=$split.txt; [ $split = ft ] && src=teacher/ft.txt
        distill-bpe-encode --wordpiece-vocab teacher/base/tokenizer.json --input $src --output teacher/$split.bpe
    done
    fairseq-preprocess --only-source --srcdict teacher/base/dict.txt --trainpref teacher/ft.bpe \
        --validpref teacher/dev.bpe --destdir teacher/data-bin/input0 --workers 2
    fairseq-preprocess --only-source --srcdict "$REPO/data-bin-templates/sst2-binary/label/dict.txt" \
        --trainpref teacher/ft.label --validpref dev.label --destdir teacher/data-bin/label --workers 2
fi

step "4. fine-tune the teacher (fairseq's sentence_prediction, $FT_EPOCHS epoch(s))"
UPDATES=$(( (FT_EXAMPLES / 32 + 1) * FT_EPOCHS ))
# --finetune-from-model starts from the import on the first launch only: a rerun
# resumes from teacher/ckpt/checkpoint_last.pt (or finds the training done)
fairseq-train "$WORK/teacher/data-bin" --user-dir "$REPO/user_dir" \
    --finetune-from-model "$WORK/teacher/base/model.pt" $(cat teacher/base/model-args.txt) \
    --task sentence_prediction --num-classes 2 --init-token 0 --max-positions 512 \
    --criterion sentence_prediction \
    --optimizer adam --adam-betas '(0.9, 0.98)' --adam-eps 1e-6 --weight-decay 0.1 --clip-norm 0.0 \
    --lr 1e-4 --lr-scheduler polynomial_decay --warmup-updates $(( UPDATES / 16 )) --total-num-update $UPDATES \
    --batch-size 32 --max-epoch $FT_EPOCHS --num-workers 0 \
    --bpe wordpiece --wordpiece-vocab "$WORK/teacher/base/tokenizer.json" \
    --best-checkpoint-metric accuracy --maximize-best-checkpoint-metric \
    --save-dir teacher/ckpt --no-epoch-checkpoints \
    --log-format simple --log-interval 100 2>&1 | tee teacher/train.log | grep -E "valid on|done training" || true
[ -s teacher/ckpt/checkpoint_best.pt ] || { echo "teacher training failed: see $WORK/teacher/train.log" >&2; exit 1; }

step "5. teacher logits for the transfer set (all of train) and dev"
for split in train dev; do
    [ -s teacher/$split.npy ] || distill-teacher-logits --checkpoint-dir teacher/ckpt \
        --input $split.txt --output teacher/$split.npy --workers 1
done

step "6. n-gram vocabulary (1-4-grams, top 1000000)"
[ -s vocab.txt ] || distill-ngram-dict --input train.txt --output vocab.txt \
    --ngram-range 1 4 --max-features 1000000 --workers 2
head -3 vocab.txt

step "7. n-gram features, one line per example"
for split in train dev; do
    [ -s $split.ngrams ] || distill-extract-ngrams --vocab vocab.txt --input $split.txt \
        --output $split.ngrams --workers 2
done

step "8. binarize (fairseq-preprocess) and add the teacher logits"
if [ ! -s data-bin/distill/valid.npy ]; then
    rm -rf data-bin
    fairseq-preprocess --only-source --srcdict vocab.txt --trainpref train.ngrams \
        --validpref dev.ngrams --destdir data-bin/input0 --workers 2
    fairseq-preprocess --only-source --srcdict "$REPO/data-bin-templates/sst2-binary/label/dict.txt" \
        --trainpref train.label --validpref dev.label --destdir data-bin/label --workers 2
    cp vocab.txt.json data-bin/input0/ngrams.json
    mkdir -p data-bin/distill
    cp teacher/train.npy teacher/train.json data-bin/distill/
    cp teacher/dev.npy data-bin/distill/valid.npy
    cp teacher/dev.json data-bin/distill/valid.json
fi

step "9. distill into the DAN (fairseq-train, mixed_adam)"
fairseq-train data-bin --user-dir "$REPO/user_dir" \
    --task feature_based_sentence_prediction --distillation-target --num-classes 2 \
    $DAN --criterion distillation --distillation-alpha 1.0 \
    --optimizer mixed_adam --adam-betas '(0.9, 0.98)' --adam-eps 1e-6 --weight-decay 0.01 \
    --lr $LR --lr-scheduler polynomial_decay --warmup-updates 200 \
    --total-num-update $(( (67349 / BATCH + 1) * EPOCHS )) \
    --batch-size $BATCH --max-epoch $EPOCHS --feature-dropout 0.4 \
    --best-checkpoint-metric accuracy --maximize-best-checkpoint-metric \
    --save-dir checkpoints --no-epoch-checkpoints --log-format simple --log-interval 200 \
    2>&1 | tee train.log | grep -E "valid on|done training" || true
[ -s checkpoints/checkpoint_best.pt ] || { echo "training failed: see $WORK/train.log" >&2; exit 1; }

step "10. student predictions from raw text (distill-predict on dev.tsv)"
distill-predict --checkpoint checkpoints/checkpoint_best.pt --data-bin data-bin \
    --input "$DATA/dev.tsv" --header --label-column 1 --output dev.predictions.tsv --cpu | tail -1

step "11. report: teacher vs student, raw text to label, this machine"
python "$REPO/demo/report.py" --dev "$DATA/dev.tsv" --teacher teacher/ckpt \
    --student "DAN=checkpoints:data-bin" --output report --title "Sparse distillation on SST-2"
