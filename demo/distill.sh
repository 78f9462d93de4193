#!/usr/bin/env bash
# Sparse distillation (Ye et al., NAACL 2022) of your own labelled data, every step a plain
# command: a BERT teacher (all-MiniLM-L6-v2, imported from Hugging Face and fine-tuned with
# fairseq) learns the training examples, then labels them and any unlabelled text (the
# transfer set); a DAN over 1-4-gram features learns from its logits (KD), optionally then
# from the gold labels (KD+FT). Classes, counts and the schedule come from the data.
# demo/sst2.sh and demo/imdb.sh are calls of this script.
#
#   bash demo/distill.sh --train train.tsv --dev dev.tsv --header --work WORK [options]
#   bash demo/distill.sh --input-format text --train a.txt --train-labels a.label \
#       --dev b.txt --dev-labels b.label --work WORK
#
# Data (checked by distill-prepare-data: bad rows are refused with their file and line):
#   --train FILE --dev FILE    labelled examples; dev chooses checkpoints and baseline settings
#   --test FILE                optional final evaluation: the report is on test, else on dev
#   --unlabelled FILE [...]    unlabelled text, one per line, labelled by the teacher as well
#   --input-format tsv|text    tsv (default; --header, --text-column 0, --label-column 1) or a text
#                              file per split with --train-labels / --dev-labels / --test-labels
#   --classes A,B,...          the class order (default: the labels sorted, as numbers if integers)
# Teacher: --teacher-examples N (first N training examples; default all), --teacher-epochs N (1),
#   --window P (512) --keep-head H: it reads P positions of a text, its first P - 2 WordPieces, or with
#   --keep-head the first H and the last P - 2 - H (head + tail of longer texts)
# Student: --features K (1000000), --epochs N (4), --batch N (64), --lr X (1e-3),
#   --max-positions N (features per text; the task's default otherwise), --dan "FLAGS" (the
#   architecture flags), --kd-ft-epochs N (0: no KD+FT stage), --kd-ft-lr X (3e-4)
# Report: --baselines (fastText and TF-IDF LR on the gold training labels), --name NAME, --title TEXT
# Run: --work DIR (or $WORK), --dry-run (print the commands, run nothing)
#
# Steps already done are skipped on rerun; fairseq-train resumes from its last checkpoint.
# Each step's full log is in WORK/logs/. Environment: WEIGHTS (the Hugging Face teacher's dir).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-}
WEIGHTS=${WEIGHTS:-$REPO/.cache/weights/all-MiniLM-L6-v2}
MODE=default
abs() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
DATA_ARGS=(); UNLABELLED=(); TEST=""
FT_EXAMPLES=""; FT_EPOCHS=1; WINDOW=512; HEAD=""
FEATURES=1000000; EPOCHS=4; BATCH=64; LR=1e-3; MAX_POSITIONS=""; KD_FT_EPOCHS=0; KD_FT_LR=3e-4
BASELINES=""; NAME=""; TITLE=""
# the n-gram table starts at the teacher's input embeddings (mean over each n-gram's WordPieces);
# three 128-unit ReLU layers over the average, as in Iyyer et al.'s DAN, dropout 0.2 after each.
# For prediction the first layer folds into the table, which shrinks to 128 columns.
DAN="--arch feature_based_linear_model --encoder-embed-dim 384 --embed-init teacher/base/model.pt"
DAN="$DAN --hidden-dim 128 --head-layers 3 --pooler-activation-fn relu --pooler-dropout 0.2"
need() { [ $# -ge 2 ] || { echo "$1 needs a value" >&2; exit 2; }; }
count() {  # count OPTION VALUE...: a whole number (sizes, epochs, positions) or a clear refusal
    need "$@"; [[ $2 =~ ^[0-9]+$ ]] || { echo "$1 needs a whole number, not '$2'" >&2; exit 2; }
}
while [ $# -gt 0 ]; do
    case $1 in
        --train|--dev|--test|--train-labels|--dev-labels|--test-labels)
            need "$@"; DATA_ARGS+=("$1" "$(abs "$2")"); [ "$1" = --test ] && TEST=$2; shift 2 ;;
        --unlabelled)
            shift; [ $# -gt 0 ] && [ "${1#--}" = "$1" ] || { echo "--unlabelled needs a file" >&2; exit 2; }
            while [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; do UNLABELLED+=("$(abs "$1")"); shift; done ;;
        --input-format|--text-column|--label-column|--classes) need "$@"; DATA_ARGS+=("$1" "$2"); shift 2 ;;
        --header) DATA_ARGS+=(--header); shift ;;
        --teacher-examples) count "$@"; FT_EXAMPLES=$2; shift 2 ;;
        --teacher-epochs) count "$@"; FT_EPOCHS=$2; shift 2 ;;
        --window) count "$@"; WINDOW=$2; shift 2 ;;
        --keep-head) count "$@"; HEAD=$2; shift 2 ;;
        --features) count "$@"; FEATURES=$2; shift 2 ;;
        --epochs) count "$@"; EPOCHS=$2; shift 2 ;;
        --batch) count "$@"; BATCH=$2; shift 2 ;;
        --lr) need "$@"; LR=$2; shift 2 ;;
        --max-positions) count "$@"; MAX_POSITIONS=$2; shift 2 ;;
        --dan) need "$@"; DAN=$2; shift 2 ;;
        --kd-ft-epochs) count "$@"; KD_FT_EPOCHS=$2; shift 2 ;;
        --kd-ft-lr) need "$@"; KD_FT_LR=$2; shift 2 ;;
        --baselines) BASELINES=--baselines; shift ;;
        --name) need "$@"; NAME=$2; shift 2 ;;
        --title) need "$@"; TITLE=$2; shift 2 ;;
        --work) need "$@"; WORK=$(abs "$2"); shift 2 ;;
        --dry-run) MODE=dry; shift ;;
        *) echo "unknown option: $1 (the options are listed at the top of demo/distill.sh)" >&2; exit 2 ;;
    esac
done
[ -n "$WORK" ] || { echo "--work DIR is needed (or WORK in the environment)" >&2; exit 2; }
WORK=$(abs "$WORK"); WORK=${WORK%/}
[ -n "$NAME" ] || NAME=$(basename "$WORK")
[ -n "$TITLE" ] || TITLE="Sparse distillation on $NAME"
source "$REPO/demo/lib.sh"
PREPARE=(distill-prepare-data "${DATA_ARGS[@]}")
[ ${#UNLABELLED[@]} = 0 ] || PREPARE+=(--unlabelled "${UNLABELLED[@]}")

# the data's classes and sizes (a dry run reads them without writing anything)
if [ $MODE = dry ]; then
    SUMMARY=$("${PREPARE[@]}" --check)
else
    lock_work "$WORK"; cd "$WORK"
    step "1. the labelled data: one example per line, its label, the classes (distill-prepare-data)"
    # data.args names the data this work dir was made from: a rerun with other data is refused
    # (its later steps would be skipped as done), not mixed in
    ARGS_NOW=$(print_command "${PREPARE[@]}")
    if [ -s data.json ] && [ -s data.args ] && [ "$(cat data.args)" != "$ARGS_NOW" ]; then
        echo "$WORK was made from other data ($(cat data.args)): give another --work, or delete it" \
             "to start again" >&2
        exit 2
    fi
    # written before data.json (the marker); a work dir from before data.args adopts it
    if todo data.json || [ ! -s data.args ]; then echo "$ARGS_NOW" > data.args.part; mv data.args.part data.args; fi
    todo data.json && run prepare-data "${PREPARE[@]}" --output-dir .
    SUMMARY=$(cat data.json)
fi
read -r NUM_CLASSES TRAIN UNSUP < <(python -c "
import json, sys
d = json.loads(sys.stdin.read())
print(len(d['classes']), d['splits']['train']['rows'], sum(u['rows'] for u in d['unlabelled']))" <<< "$SUMMARY")
[ $MODE = dry ] && print_command "${PREPARE[@]}" --output-dir .
[ $MODE = dry ] || python -c "
import json; d = json.load(open('data.json'))
for s, i in d['splits'].items(): print(f'   {s}: {i[\"rows\"]} examples, ' + ', '.join(f'{c}: {k}' for c, k in i['per_class'].items()))
if d['unlabelled']: print(f'   unlabelled: {sum(u[\"rows\"] for u in d[\"unlabelled\"])} texts')"
# finetune_teacher's --num-classes; BATCH_MULTIPLE 1: fairseq's batching drops a last batch whose
# size is not a multiple of --required-batch-size-multiple (8), the same examples every epoch
export NUM_CLASSES BATCH_MULTIPLE=1
LABEL_DICT=label.dict.txt
[ -n "$FT_EXAMPLES" ] && [ "$FT_EXAMPLES" -le "$TRAIN" ] || FT_EXAMPLES=$TRAIN  # its schedule counts them
# the transfer set: the training texts, then the unlabelled ones (their rows follow the teacher's logits)
TRANSFER=train; [ "$UNSUP" = 0 ] || TRANSFER=transfer
ROWS=$((TRAIN + UNSUP))
EVAL=dev; [ -n "$TEST" ] && EVAL=test
# the teacher's window, the same cut in fine-tuning, labelling and the report (<s> and </s> take 2)
CUT=(--max-tokens $((WINDOW - 2))); WINDOW_ARGS=(--max-positions "$WINDOW"); REPORT_WINDOW=(--teacher-max-positions "$WINDOW")
if [ -n "$HEAD" ]; then CUT+=(--keep-head "$HEAD"); WINDOW_ARGS+=(--keep-head "$HEAD"); REPORT_WINDOW+=(--teacher-keep-head "$HEAD"); fi

if [ "$TRANSFER" = transfer ] && todo transfer.txt; then
    show "cat train.txt unlabelled.txt > transfer.txt"
    [ $MODE = dry ] || { cat train.txt unlabelled.txt > transfer.txt.part; mv transfer.txt.part transfer.txt; }
fi

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
        --output teacher/ft.bpe "${CUT[@]}"
    run encode-dev distill-bpe-encode --wordpiece-vocab teacher/base/tokenizer.json --input dev.txt \
        --output teacher/dev.bpe "${CUT[@]}"
    run teacher-bin-input fairseq-preprocess --only-source --srcdict teacher/base/dict.txt \
        --trainpref teacher/ft.bpe --validpref teacher/dev.bpe --destdir teacher/data-bin/input0 --workers 2
    run teacher-bin-label fairseq-preprocess --only-source --srcdict $LABEL_DICT \
        --trainpref teacher/ft.label --validpref dev.label --destdir teacher/data-bin/label --workers 2
fi

step "4. fine-tune the teacher (fairseq's sentence_prediction, $FT_EPOCHS epoch(s))"
finetune_teacher "$WORK/teacher/data-bin" $FT_EXAMPLES $FT_EPOCHS 1e-4 16

step "5. teacher logits for the transfer set ($TRAIN training + $UNSUP unlabelled examples) and dev"
for split in $TRANSFER dev; do
    todo teacher/$split.npy && run logits-$split distill-teacher-logits --checkpoint-dir teacher/ckpt \
        "${WINDOW_ARGS[@]}" --input $split.txt --output teacher/$split.npy
done

step "6. n-gram vocabulary (1-4-grams, top $FEATURES)"
todo vocab.txt && run ngram-dict distill-ngram-dict --input $TRANSFER.txt --output vocab.txt \
    --ngram-range 1 4 --max-features $FEATURES --workers 2
[ $MODE = dry ] || head -3 vocab.txt

step "7. n-gram features, one line per example"
for split in $TRANSFER dev; do
    todo $split.ngrams && run ngrams-$split distill-extract-ngrams --vocab vocab.txt --input $split.txt \
        --output $split.ngrams --workers 2
done
if [ "$KD_FT_EPOCHS" != 0 ] && [ $TRANSFER = transfer ] && todo train.ngrams; then  # the labelled rows come first
    show "head -n $TRAIN transfer.ngrams > train.ngrams"
    [ $MODE = dry ] || { head -n $TRAIN transfer.ngrams > train.ngrams.part; mv train.ngrams.part train.ngrams; }
fi

step "8. binarize (fairseq-preprocess) and add the teacher logits"
if todo data-bin/distill/valid.npy; then
    [ $MODE = dry ] || rm -rf data-bin
    run bin-input fairseq-preprocess --only-source --srcdict vocab.txt --trainpref $TRANSFER.ngrams \
        --validpref dev.ngrams --destdir data-bin/input0 --workers 2
    if [ $TRANSFER = train ]; then
        run bin-label fairseq-preprocess --only-source --srcdict $LABEL_DICT \
            --trainpref train.label --validpref dev.label --destdir data-bin/label --workers 2
    else  # the unlabelled rows have no gold label: dev's alone
        run bin-label fairseq-preprocess --only-source --srcdict $LABEL_DICT \
            --validpref dev.label --destdir data-bin/label --workers 2
    fi
    run cp-settings cp vocab.txt.json data-bin/input0/ngrams.json
    run mkdir-distill mkdir -p data-bin/distill
    # each .json (class order) before its .npy: the .npy is what a rerun trusts
    run cp-train-order cp teacher/$TRANSFER.json data-bin/distill/train.json
    run cp-train-logits cp teacher/$TRANSFER.npy data-bin/distill/train.npy
    run cp-dev-order cp teacher/dev.json data-bin/distill/valid.json
    run cp-dev-logits cp teacher/dev.npy data-bin/distill/valid.npy
fi
if [ "$KD_FT_EPOCHS" != 0 ] && todo data-bin-ft/label/valid.idx; then  # gold training labels for KD+FT
    [ $MODE = dry ] || rm -rf data-bin-ft
    run bin-ft-input fairseq-preprocess --only-source --srcdict vocab.txt --trainpref train.ngrams \
        --validpref dev.ngrams --destdir data-bin-ft/input0 --workers 2
    run cp-ft-settings cp vocab.txt.json data-bin-ft/input0/ngrams.json
    run bin-ft-label fairseq-preprocess --only-source --srcdict $LABEL_DICT \
        --trainpref train.label --validpref dev.label --destdir data-bin-ft/label --workers 2
fi

DAN_TRAIN=(--user-dir "$REPO/user_dir" --task feature_based_sentence_prediction --num-classes $NUM_CLASSES
           --required-batch-size-multiple $BATCH_MULTIPLE)
[ -z "$MAX_POSITIONS" ] || DAN_TRAIN+=(--max-positions $MAX_POSITIONS)
ADAM=(--optimizer mixed_adam --adam-betas '(0.9, 0.98)' --adam-eps 1e-6 --weight-decay 0.01)
SELECT=(--best-checkpoint-metric accuracy --maximize-best-checkpoint-metric --no-epoch-checkpoints)

UPDATES=$(( (ROWS / BATCH + 1) * EPOCHS ))
WARMUP=$(( UPDATES / 10 < 200 ? UPDATES / 10 : 200 ))  # 200, or a tenth of a short run

step "9. distill into the DAN (fairseq-train, mixed_adam; $ROWS transfer examples)"
train dan checkpoints fairseq-train data-bin "${DAN_TRAIN[@]}" --distillation-target \
    $DAN --criterion distillation --distillation-alpha 1.0 "${ADAM[@]}" \
    --lr $LR --lr-scheduler polynomial_decay --warmup-updates $WARMUP --total-num-update $UPDATES \
    --batch-size $BATCH --max-epoch $EPOCHS --feature-dropout 0.4 "${SELECT[@]}" \
    --save-dir checkpoints --log-format simple --log-interval 200
FINAL=checkpoints; FINAL_BIN=data-bin; STUDENTS=(--student "DAN=checkpoints:data-bin")

if [ "$KD_FT_EPOCHS" != 0 ]; then
    step "9b. fine-tune the DAN on the gold training labels (KD+FT, the paper's third stage)"
    # --finetune-from-model: the KD student's weights on the first launch; a rerun resumes
    FT_UPDATES=$(( (TRAIN / BATCH + 1) * KD_FT_EPOCHS ))
    train dan-ft checkpoints-ft fairseq-train data-bin-ft "${DAN_TRAIN[@]}" $DAN \
        --finetune-from-model "$WORK/checkpoints/checkpoint_best.pt" \
        --criterion distillation --distillation-alpha 0.0 "${ADAM[@]}" \
        --lr $KD_FT_LR --lr-scheduler polynomial_decay --warmup-updates $(( FT_UPDATES / 10 < 50 ? FT_UPDATES / 10 : 50 )) \
        --total-num-update $FT_UPDATES \
        --batch-size $BATCH --max-epoch $KD_FT_EPOCHS --feature-dropout 0.4 "${SELECT[@]}" \
        --save-dir checkpoints-ft --log-format simple --log-interval 200
    FINAL=checkpoints-ft; FINAL_BIN=data-bin-ft
    STUDENTS=(--student "DAN (KD)=checkpoints:data-bin" --student "DAN (KD+FT)=checkpoints-ft:data-bin-ft")
fi

step "10. student predictions from raw text (distill-predict on $EVAL.tsv)"
todo $EVAL.predictions.tsv && run predict distill-predict --checkpoint $FINAL/checkpoint_best.pt \
    --data-bin $FINAL_BIN --input $EVAL.tsv --header --label-column 1 --output $EVAL.predictions.tsv
[ $MODE = dry ] || tail -n 1 "$WORK/logs/predict.log"

step "11. report: teacher vs student, raw text to label, this machine ($EVAL set)"
BASELINE_ARGS=(); [ -z "$BASELINES" ] || BASELINE_ARGS=(--baselines --train train.tsv --valid dev.tsv)
todo report.json && run report python "$REPO/demo/report.py" --dev $EVAL.tsv --split-name $EVAL \
    --task-name "$NAME" --teacher teacher/ckpt "${REPORT_WINDOW[@]}" "${STUDENTS[@]}" "${BASELINE_ARGS[@]}" \
    --output report --title "$TITLE"
[ $MODE = dry ] || last_table "$WORK/logs/report.log"
