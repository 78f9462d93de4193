#!/usr/bin/env bash
# Sparse distillation on SST-2 (Ye et al., NAACL 2022), every step a plain command:
# a BERT teacher (all-MiniLM-L6-v2, imported from Hugging Face and fine-tuned with
# fairseq) labels the transfer set; a DAN over n-grams learns from its logits.
#
#   bash demo/sst2.sh            # defaults: about 12 minutes on 2 CPU cores
#   bash demo/sst2.sh --full     # teacher on all of train (2 epochs), paper-size DAN: hours on CPU
#   bash demo/sst2.sh --smoke    # the same steps on a slice with tiny settings (the tests' check)
#   bash demo/sst2.sh --dry-run  # print the commands of the default run (the README's), run nothing
#   bash demo/sst2.sh --corpus [--smoke]  # then IMDB sentences as unlabelled transfer data (demo/sst2_corpus.sh)
#
# Steps already done are skipped on rerun; fairseq-train resumes from its last
# checkpoint. Each step's full log is in WORK/logs/. Environment: DATA (GLUE SST-2
# dir), WORK (output dir), WEIGHTS (HF dir).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DATA=${DATA:-$REPO/../shared/data/glue/SST-2}
WORK=${WORK:-$REPO/demo/work/sst2}
WEIGHTS=${WEIGHTS:-$REPO/.cache/weights/all-MiniLM-L6-v2}
MODE=default
if [ "${1:-}" = --corpus ]; then shift; exec bash "$REPO/demo/sst2_corpus.sh" "$@"; fi
case ${1:-} in
    "") ;;
    --full) MODE=full; WORK=${WORK%/}-full ;;
    --smoke) MODE=smoke ;;
    --dry-run) MODE=dry ;;
    *) echo "unknown option: $1 (use --full, --smoke or --dry-run)" >&2; exit 2 ;;
esac
source "$REPO/demo/lib.sh"
if [ $MODE != dry ]; then lock_work "$WORK"; cd "$WORK"; fi
LABEL_DICT="$REPO/data-bin-templates/sst2-binary/label/dict.txt"

# The DAN overfits a transfer set this small (67k phrases; the paper used millions
# of reviews) after 2-4 epochs: strong feature and head dropout, few epochs.
ROWS=67349; FT_EXAMPLES=20000; FT_EPOCHS=1; EPOCHS=4; BATCH=64; LR=1e-3; FEATURES=1000000
# the n-gram table starts at the teacher's input embeddings (mean over each n-gram's WordPieces);
# three 128-unit ReLU layers over the average, as in Iyyer et al.'s DAN (+1.2 points over one
# 384-unit tanh layer, mean of 3 seeds), dropout 0.2 after each.  For prediction the first
# layer folds into the table, which shrinks to 128 columns.
DAN="--arch feature_based_linear_model --encoder-embed-dim 384 --embed-init teacher/base/model.pt"
DAN="$DAN --hidden-dim 128 --head-layers 3 --pooler-activation-fn relu --pooler-dropout 0.2"
case $MODE in
    full) ROWS=67349; FT_EXAMPLES=67349; FT_EPOCHS=2; EPOCHS=8; BATCH=128; LR=5e-4
          DAN="--arch dan_paper --pooler-dropout 0.3" ;;
    smoke) ROWS=600; FT_EXAMPLES=300; EPOCHS=1; FEATURES=20000 ;;
esac
DEV_TSV=$DATA/dev.tsv
if [ $MODE = smoke ]; then  # a slice of dev too, header kept
    DEV_TSV=$WORK/dev.tsv; [ -s "$DEV_TSV" ] || { head -n 201 "$DATA/dev.tsv" > "$DEV_TSV.part"; mv "$DEV_TSV.part" "$DEV_TSV"; }
fi

step "1. raw text and labels (header dropped; one example per line)"
if todo train.label; then
    for split in train dev; do
        lines="tail -n +2"  # the smoke run keeps a slice of train (sed: no SIGPIPE under pipefail)
        if [ $split = train ] && [ $MODE = smoke ]; then lines="sed -n 2,$((ROWS + 1))p"; fi
        src=$DATA/train.tsv; [ $split = dev ] && src=$DEV_TSV
        for col in 1 2; do
            out=$split.txt; [ $col = 2 ] && out=$split.label
            show "$lines SST-2/$split.tsv | cut -f$col > $out"
            [ $MODE = dry ] || { $lines "$src" | cut -f$col > $out.part; mv $out.part $out; }
        done
    done
fi
[ $MODE = dry ] || wc -l train.txt dev.txt

step "2. import the Hugging Face teacher into fairseq"
# model.pt is written last: once it is there, the import is whole
todo teacher/base/model.pt && run import-teacher distill-import-hf --hf-dir "$WEIGHTS" --output teacher/base

step "3. teacher data: WordPiece-encode, binarize ($FT_EXAMPLES training examples)"
if todo teacher/data-bin/label/valid.idx; then
    show "head -n $FT_EXAMPLES train.txt > teacher/ft.txt"
    show "head -n $FT_EXAMPLES train.label > teacher/ft.label"
    if [ $MODE != dry ]; then
        mkdir -p teacher
        head -n $FT_EXAMPLES train.txt > teacher/ft.txt; head -n $FT_EXAMPLES train.label > teacher/ft.label
    fi
    run encode-ft distill-bpe-encode --wordpiece-vocab teacher/base/tokenizer.json --input teacher/ft.txt \
        --output teacher/ft.bpe
    run encode-dev distill-bpe-encode --wordpiece-vocab teacher/base/tokenizer.json --input dev.txt \
        --output teacher/dev.bpe
    run teacher-bin-input fairseq-preprocess --only-source --srcdict teacher/base/dict.txt \
        --trainpref teacher/ft.bpe --validpref teacher/dev.bpe --destdir teacher/data-bin/input0 --workers 2
    run teacher-bin-label fairseq-preprocess --only-source --srcdict "$LABEL_DICT" \
        --trainpref teacher/ft.label --validpref dev.label --destdir teacher/data-bin/label --workers 2
fi

step "4. fine-tune the teacher (fairseq's sentence_prediction, $FT_EPOCHS epoch(s))"
finetune_teacher "$WORK/teacher/data-bin" $FT_EXAMPLES $FT_EPOCHS 1e-4 16

step "5. teacher logits for the transfer set (all of train) and dev"
for split in train dev; do
    todo teacher/$split.npy && run logits-$split distill-teacher-logits --checkpoint-dir teacher/ckpt \
        --input $split.txt --output teacher/$split.npy
done

step "6. n-gram vocabulary (1-4-grams, top $FEATURES)"
todo vocab.txt && run ngram-dict distill-ngram-dict --input train.txt --output vocab.txt \
    --ngram-range 1 4 --max-features $FEATURES --workers 2
[ $MODE = dry ] || head -3 vocab.txt

step "7. n-gram features, one line per example"
for split in train dev; do
    todo $split.ngrams && run ngrams-$split distill-extract-ngrams --vocab vocab.txt --input $split.txt \
        --output $split.ngrams --workers 2
done

step "8. binarize (fairseq-preprocess) and add the teacher logits"
if todo data-bin/distill/valid.npy; then
    [ $MODE = dry ] || rm -rf data-bin
    run bin-input fairseq-preprocess --only-source --srcdict vocab.txt --trainpref train.ngrams \
        --validpref dev.ngrams --destdir data-bin/input0 --workers 2
    run bin-label fairseq-preprocess --only-source --srcdict "$LABEL_DICT" \
        --trainpref train.label --validpref dev.label --destdir data-bin/label --workers 2
    run cp-settings cp vocab.txt.json data-bin/input0/ngrams.json
    run mkdir-distill mkdir -p data-bin/distill
    # each .json (class order) before its .npy: the .npy is what a rerun trusts
    run cp-train-logits cp teacher/train.json teacher/train.npy data-bin/distill/
    run cp-dev-order cp teacher/dev.json data-bin/distill/valid.json
    run cp-dev-logits cp teacher/dev.npy data-bin/distill/valid.npy
fi

step "9. distill into the DAN (fairseq-train, mixed_adam)"
train dan checkpoints fairseq-train data-bin --user-dir "$REPO/user_dir" \
    --task feature_based_sentence_prediction --distillation-target --num-classes 2 \
    $DAN --criterion distillation --distillation-alpha 1.0 \
    --optimizer mixed_adam --adam-betas '(0.9, 0.98)' --adam-eps 1e-6 --weight-decay 0.01 \
    --lr $LR --lr-scheduler polynomial_decay --warmup-updates 200 \
    --total-num-update $(( (ROWS / BATCH + 1) * EPOCHS )) \
    --batch-size $BATCH --max-epoch $EPOCHS --feature-dropout 0.4 \
    --best-checkpoint-metric accuracy --maximize-best-checkpoint-metric \
    --save-dir checkpoints --no-epoch-checkpoints --log-format simple --log-interval 200

step "10. student predictions from raw text (distill-predict on dev.tsv)"
run predict distill-predict --checkpoint checkpoints/checkpoint_best.pt --data-bin data-bin \
    --input "$DEV_TSV" --header --label-column 1 --output dev.predictions.tsv
[ $MODE = dry ] || tail -n 1 "$WORK/logs/predict.log"

step "11. report: teacher vs student, raw text to label, this machine"
run report python "$REPO/demo/report.py" --dev "$DEV_TSV" --teacher teacher/ckpt \
    --student "DAN=checkpoints:data-bin" --output report --title "Sparse distillation on SST-2"
[ $MODE = dry ] || last_table "$WORK/logs/report.log"
