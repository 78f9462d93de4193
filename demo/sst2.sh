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
# It is demo/distill.sh (the pipeline for any labelled data) with SST-2's files and settings.
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
[ $MODE = dry ] || { mkdir -p "$WORK"; WORK=$(cd "$WORK" && pwd); }  # one name for the lock and distill.sh

# The DAN overfits a transfer set this small (67k phrases; the paper used millions
# of reviews) after 2-4 epochs: strong feature and head dropout (distill.sh's defaults), few epochs.
# The teacher learns from the first 20k phrases; the DAN from its logits on all 67k.
ARGS=(--teacher-examples 20000 --epochs 4)
TRAIN_TSV=$DATA/train.tsv; DEV_TSV=$DATA/dev.tsv
case $MODE in
    full) ARGS=(--teacher-examples 67349 --teacher-epochs 2 --epochs 8 --batch 128 --lr 5e-4
                --dan "--arch dan_paper --pooler-dropout 0.3") ;;
    smoke)  # slices of train (600 phrases) and dev (200 sentences), headers kept
        ARGS=(--teacher-examples 300 --epochs 1 --features 20000)
        lock_work "$WORK"
        mkdir -p "$WORK/slice"; TRAIN_TSV=$WORK/slice/train.tsv; DEV_TSV=$WORK/slice/dev.tsv
        # sed, not head: no SIGPIPE under pipefail; renamed into place when whole
        [ -s "$TRAIN_TSV" ] || { sed -n 1,601p "$DATA/train.tsv" > "$TRAIN_TSV.part"; mv "$TRAIN_TSV.part" "$TRAIN_TSV"; }
        [ -s "$DEV_TSV" ] || { sed -n 1,201p "$DATA/dev.tsv" > "$DEV_TSV.part"; mv "$DEV_TSV.part" "$DEV_TSV"; }
        ;;
    dry) ARGS+=(--dry-run) ;;
esac
export DATA DATA_NAME=SST-2  # a dry run prints the data's paths as SST-2/... (the README's block)
exec bash "$REPO/demo/distill.sh" --train "$TRAIN_TSV" --dev "$DEV_TSV" --header --work "$WORK" \
    --name SST-2 --title "Sparse distillation on SST-2" "${ARGS[@]}"
