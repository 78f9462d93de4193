# Shared by the demos (sourced): work-dir lock, quiet steps with full logs, the teacher's fine-tuning.
#
# Each step's whole output goes to $WORK/logs/NAME.log; the terminal shows the step, the
# progress bars and warnings of the plugin's tools, the result lines, and where the log is. Each
# step's wall time is appended to $WORK/logs/steps.tsv (name, seconds), as a rerun adds it.

export PATH="$REPO/.venv/bin:$PATH"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

step() { [ "${MODE:-}" = dry ] && return; echo; echo "== $*"; }

# --dry-run prints each command as the README shows it (paths relative to the repository
# and the work directory, data under SST-2/), and runs nothing; tests compare the two.

todo() {  # todo FILE: the step that makes FILE is still to do (always, in a dry run)
    [ "${MODE:-}" = dry ] || [ ! -s "$1" ]
}

print_command() {
    local out="" a
    for a in "$@"; do
        a=${a//$WORK\//}; a=${a//$WORK/.}; [ -z "${DATA:-}" ] || a=${a//$DATA/${DATA_NAME:-SST-2}}; a=${a//$REPO\//}
        if [ "$a" = __MODEL_ARGS__ ]; then out+=' $(cat teacher/base/model-args.txt)'
        elif [[ $a =~ [[:space:]\(\)\'\"\$\*] ]]; then out+=" '$a'"
        else out+=" $a"; fi
    done
    echo "${out# }"
}

show() {  # show TEXT: a shell line of the demo, printed in a dry run
    [ "${MODE:-}" = dry ] && echo "$1"
    return 0
}

run() {  # run NAME CMD...: print it (dry run), or run it with its output in logs/NAME.log
    local name=$1; shift
    if [ "${MODE:-}" = dry ]; then print_command "$@"; return 0; fi
    logged "$name" "$@"
}

train() {  # train NAME SAVE-DIR CMD...: print it (dry run), or train with the validation lines shown
    local name=$1 save=$2; shift 2
    if [ "${MODE:-}" = dry ]; then print_command "$@"; return 0; fi
    train_logged "$name" "$save" "$@"
}

lock_work() {  # lock_work DIR: one demo run per work directory (the lock dies with the process)
    # a demo that calls another on its own work dir passes its lock down (fd 9 is inherited)
    [ "${DEMO_LOCKED:-}" = "$1" ] && return 0
    mkdir -p "$1/logs"
    exec 9>>"$1/.lock"
    if ! flock -n 9; then
        echo "work directory $1 is in use by process $(cat "$1/.lock.pid" 2>/dev/null || echo '?'):" \
             "wait for it to finish or stop it, then rerun" >&2
        exit 1
    fi
    echo $$ > "$1/.lock.pid"
    export DEMO_LOCKED=$1
}

step_time() {  # step_time NAME START: NAME's seconds (tenths) since START (microseconds) to logs/steps.tsv
    local d=$(( $(now_us) - $2 ))
    printf '%s\t%d.%d\n' "$1" $((d / 1000000)) $((d / 100000 % 10)) >> "$WORK/logs/steps.tsv"
}
now_us() { echo "${EPOCHREALTIME/[.,]/}"; }  # bash's clock in microseconds, whatever the locale's decimal mark

logged() {  # logged NAME CMD...: CMD's output to logs/NAME.log; the plugin's tools show bars and warnings
    local name=$1 log="$WORK/logs/$1.log"; shift
    local ok=0 start; start=$(now_us)
    case $1 in
        distill-*) DISTILL_LOG_FILE="$log" LOGLEVEL=WARNING "$@" >> "$log" || ok=$? ;;
        *) "$@" >> "$log" 2>&1 || ok=$? ;;
    esac
    step_time "$name" "$start"
    [ $ok = 0 ] && return 0
    echo "failed: $1 (see $log)" >&2
    tail -n 20 "$log" >&2
    exit 1
}

train_logged() {  # train_logged NAME SAVE-DIR fairseq-train ARGS...: progress lines on the terminal
    local name=$1 save=$2 log="$WORK/logs/$1.log"; shift 2
    local start; start=$(now_us)
    echo "   training log: $log"
    "$@" > "$log" 2>&1 &
    local pid=$!
    # the validation lines as they come (fairseq's own progress is in the log)
    tail -n +1 --pid=$pid -f "$log" 2>/dev/null | grep --line-buffered -E "\| valid on|done training" \
        | sed -u -E 's/.*\| (valid on|done training)/   \1/; s/\| (loss|kd_loss|ce_loss|ppl|wps|wpb|bsz|num_updates|best_[a-z]+|pred|targ) [^|]*//g' || true
    local rc=0
    wait $pid || rc=$?
    step_time "$name" "$start"
    # a run killed mid-way must not pass for a finished one: the rerun resumes it
    if [ $rc != 0 ] || [ ! -s "$save/checkpoint_best.pt" ]; then
        echo "training failed: see $log" >&2; tail -n 20 "$log" >&2; exit 1
    fi
}

finetune_teacher() {  # finetune_teacher DATA-BIN EXAMPLES EPOCHS LR WARMUP-SHARE [METRIC [SAVE-DIR [FROM-DIR [FROM-PT]]]]
    # sentence_prediction from FROM-DIR/FROM-PT (default: the import, teacher/base/model.pt) with
    # the architecture flags of FROM-DIR/model-args.txt
    local bin=$1 examples=$2 epochs=$3 lr=$4 warmup_div=$5 metric=${6:-accuracy} save=${7:-teacher/ckpt}
    local from=${8:-teacher/base}; local from_pt=${9:-$from/model.pt}
    local name=teacher-finetune; [ "$save" = teacher/ckpt ] || name=teacher-finetune-${save//\//-}
    local report=""; [ "$metric" = mcc ] && report=--report-mcc  # sentence_prediction's CoLA metric
    local updates=$(( (examples / 32 + 1) * epochs ))
    local model_args=__MODEL_ARGS__  # the flags of the imported architecture
    [ "${MODE:-}" = dry ] || model_args=$(cat $from/model-args.txt)
    # --finetune-from-model starts from the import on the first launch only: a rerun
    # resumes from teacher/ckpt/checkpoint_last.pt (or finds the training done)
    train $name "$save" fairseq-train "$bin" --user-dir "$REPO/user_dir" \
        --finetune-from-model "$WORK/$from_pt" $model_args \
        --task sentence_prediction --num-classes ${NUM_CLASSES:-2} --init-token 0 --max-positions 512 \
        --criterion sentence_prediction $report \
        --optimizer adam --adam-betas '(0.9, 0.98)' --adam-eps 1e-6 --weight-decay 0.1 --clip-norm 0.0 \
        --lr $lr --lr-scheduler polynomial_decay --warmup-updates $(( updates / warmup_div )) \
        --total-num-update $updates --batch-size 32 --max-epoch $epochs --num-workers 0 \
        ${BATCH_MULTIPLE:+--required-batch-size-multiple $BATCH_MULTIPLE} \
        --bpe wordpiece --wordpiece-vocab "$WORK/teacher/base/tokenizer.json" \
        --best-checkpoint-metric $metric --maximize-best-checkpoint-metric \
        --save-dir "$save" --no-epoch-checkpoints --log-format simple --log-interval 100
}

last_table() {  # last_table LOG: the report table of the last run in LOG (logs are appended to)
    awk '/^model /{buf=""} {buf=buf $0 "\n"} END{printf "%s", buf}' "$1" | grep -v '^DEBUG:'
}

after_main_demo() {  # after_main_demo WHY: run demo/sst2.sh (same mode) unless done, then hold WORK
    if [ ! -s "$WORK/report.json" ]; then
        step "0. the sparse-distillation demo first ($1)"
        local main_flag=""; [ "$MODE" != default ] && main_flag=--$MODE
        WORK=$BASE DATA=$DATA bash "$REPO/demo/sst2.sh" $main_flag
    fi
    lock_work "$WORK"  # after the main demo, which holds the lock while it runs
    cd "$WORK"
    DEV_TSV=$DATA/dev.tsv; [ "$MODE" = smoke ] && DEV_TSV=$WORK/dev.tsv  # the main demo's slice
    return 0
}

slice_logits() {  # slice_logits IN.npy OUT.npy N: the first N rows, written atomically (class order first)
    todo "$2" || return 0
    run "slice-$(basename "$2" .npy)" python -c "
import sys, json, numpy as np
from user_dir.data.teacher_targets import class_order_path, save_teacher_targets
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
classes = json.load(open(class_order_path(src)))['classes']
save_teacher_targets(dst, np.load(src, mmap_mode='r')[:n], classes, sliced_from=src)
" "$1" "$2" "$3"
}
