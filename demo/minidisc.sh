#!/usr/bin/env bash
# MiniDisc (Zhang et al., 2022): distil a fine-tuned teacher into a 90%-sparse student (90% of its
# heads and FFN neurons gone) through a teacher assistant chosen in one trial, beside direct KD
# and MaxiDisc (every single-assistant path, one trial each: what MiniDisc saves).
#   1. mask-gradient importance of the teacher's heads and neurons on dev (distill-importance
#      --method mask), reorder and the sparsity map over the grid (distill-sparsify);
#   2. MiniDisc: sandwich training of every grid sparsity >= 50 at once (sandwich_distillation),
#      the assistant chosen at each validation by best/100 + LAM * s/100 and saved dense; round 2
#      starts from it, with it as the teacher, and ends at the target (TA_ROUNDS = 2: one assistant);
#   3. direct KD: the teacher sliced at the target, distilled from the teacher;
#   4. MaxiDisc: for each grid sparsity s between 0 and the target, slice at s, distil, slice the
#      result at the target, distil from it;
#   5. report: dev metric, parameters, CPU throughput of each (minidisc/TARGET/report.json), and
#      each path's wall time (minidisc/TARGET/summary.json).
# Every KD stage is MiniDisc's loss: hidden-state MSE over every layer on real tokens plus soft
# cross-entropy with the teacher (T = 1), equally weighted, on the teacher's gold training texts.
#
#   bash demo/minidisc.sh                 # MRPC (the seed's example; demo/mrpc.sh's teacher)
#   bash demo/minidisc.sh --task sst2     # SST-2 (demo/sst2.sh's teacher)
#   ... --target 95                       # the 95% target instead of 90
#   ... --smoke                           # the same steps on slices with tiny settings
#   ... --full                            # MiniDisc's schedule (10 epochs per stage)
#
# Runs the task's main demo first if its report is missing. Finished stages are skipped on rerun
# (a stage's done file is written last); fairseq-train resumes from its last checkpoint.
# Environment: DATA, WORK (the main demo's work dir).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
TASK=mrpc; MODE=default; TARGET=90
while [ $# -gt 0 ]; do
    case $1 in
        --task) TASK=$2; shift ;;
        --target) TARGET=$2; shift ;;
        --smoke) MODE=smoke ;;
        --full) MODE=full ;;
        *) echo "unknown option: $1 (use --task mrpc|sst2, --target S, --smoke or --full)" >&2; exit 2 ;;
    esac
    shift
done
case $TASK in
    mrpc) DATA=${DATA:-$REPO/../shared/data/glue/MRPC}; WORK=${WORK:-$REPO/demo/work/mrpc}
          MAIN=mrpc.sh; METRIC=acc_and_f1; COLUMNS="--text-column 3 4 --label-column 0" ;;
    sst2) DATA=${DATA:-$REPO/../shared/data/glue/SST-2}; WORK=${WORK:-$REPO/demo/work/sst2}
          MAIN=sst2.sh; METRIC=accuracy; COLUMNS="" ;;
    *) echo "--task $TASK: mrpc or sst2" >&2; exit 2 ;;
esac
source "$REPO/demo/lib.sh"
# as the task names it (90, not 90.0): the metric ${METRIC}_s$TARGET and the assistant's sparsity
TARGET=$(python -c "import sys; s = float(sys.argv[1]); print(int(s) if s == int(s) else s)" "$TARGET")
if [ ! -s "$WORK/report.json" ]; then
    step "0. the $TASK demo first (its fine-tuned teacher is the teacher here)"
    flag=""; [ $MODE = smoke ] && flag=--smoke
    WORK=$WORK DATA=$DATA bash "$REPO/demo/$MAIN" $flag
fi
lock_work "$WORK"
cd "$WORK"

# EPOCHS: per KD stage over the teacher's gold training texts (MiniDisc: 10 for MRPC);
# LR and BATCH: MiniDisc's MRPC settings are 3e-5 and 16; LAM 0.2 and the grid are its defaults.
EPOCHS=3; LR=3e-5; BATCH=16; LAM=0.2; TRUNC=50; TA_ROUNDS=2; GRID=0,10,20,30,40,50,60,70,80,85,90,95
VALIDATE=0  # updates between validations (0: each epoch)
CAP=""      # --max-update of every stage (the smoke run's few updates)
[ $TASK = sst2 ] && { EPOCHS=1; BATCH=32; LR=5e-5; }
case $MODE in
    full) EPOCHS=10 ;;
    smoke) EPOCHS=1; GRID=0,50,90,95; VALIDATE=2; CAP="--max-update 4" ;;
esac
TEACHER=teacher/ckpt/checkpoint_best.pt
TOKENIZER=teacher/base/tokenizer.json
BIN=teacher/data-bin  # the teacher's gold training texts, dev as valid
DEV_TSV=$DATA/dev.tsv; [ $MODE = smoke ] && DEV_TSV=$WORK/dev.tsv  # the main demo's slice
R=minidisc; T=$R/$TARGET
mkdir -p $T
ROWS=$(if [ -s teacher/ft.label ]; then wc -l < teacher/ft.label; else wc -l < train.label; fi)
UPDATES=$(( (ROWS + BATCH - 1) / BATCH * EPOCHS ))
KD="--criterion layerwise_distillation --layer-map bottom --hidden-weight 1 --no-hidden-padding"
KD="$KD --prediction-loss soft_ce --distillation-temperature 1"
every="--validate-interval-updates $VALIDATE"; [ $VALIDATE = 0 ] && every=""

kd() {  # kd NAME FROM-DIR TEACHER-PT TASK-FLAGS...: fairseq-train from FROM-DIR/model.pt into R/.../NAME
    local save=$1 from=$2 teacher=$3; shift 3
    [ -e $save/done ] && return 0
    local start=$SECONDS
    train $(echo $save | tr / -) $save fairseq-train $BIN --user-dir "$REPO/user_dir" \
        --num-classes 2 --init-token 0 $(cat $from/model-args.txt) --finetune-from-model "$WORK/$from/model.pt" \
        --teacher-checkpoint "$WORK/$teacher" $KD \
        --optimizer adam --adam-betas '(0.9, 0.98)' --adam-eps 1e-6 --weight-decay 0.01 --clip-norm 5.0 \
        --lr $LR --lr-scheduler polynomial_decay --warmup-updates $((UPDATES / 10)) --total-num-update $UPDATES \
        --batch-size $BATCH --max-epoch $EPOCHS --num-workers 0 $every $CAP \
        --bpe wordpiece --wordpiece-vocab "$WORK/$TOKENIZER" --maximize-best-checkpoint-metric \
        --save-dir $save --no-epoch-checkpoints --log-format simple --log-interval 50 "$@"
    echo $((SECONDS - start)) > $save/seconds
    touch $save/done
}
# one sparsity: glue_distillation (best checkpoint by accuracy, which its criterion logs)
plain() { kd "$@" --task glue_distillation --best-checkpoint-metric accuracy; }
dense() {  # dense OUT-DIR SPARSITY CHECKPOINT [--map M]: the checkpoint sliced at SPARSITY
    local out=$1 s=$2 ckpt=$3; shift 3
    todo $out/model.pt && run sparsify-$(echo $out | tr / -) distill-sparsify --checkpoint $ckpt --densify $s \
        --output $out "$@"
    return 0
}

step "1. mask-gradient importance on dev, the reorder and the sparsity map (grid $GRID)"
todo $R/importance.json && run md-importance distill-importance --checkpoint $TEACHER --data $BIN \
    --split valid --method mask --output $R/importance.json
todo $R/sparse/model.pt && run md-sparsify distill-sparsify --checkpoint $TEACHER \
    --importance $R/importance.json --grid $GRID --output $R/sparse

step "2. MiniDisc: sandwich training (sparsities >= $TRUNC at once), the assistant by lambda $LAM"
teacher=$TEACHER; from=$R/sparse; t_sparsity=0; assistants=()
for round in $(seq 1 $TA_ROUNDS); do
    final=""; [ $round = $TA_ROUNDS ] && final=--final-round
    kd $T/minidisc-r$round $from $teacher --task sandwich_distillation --sparsity-map "$WORK/$from/model.pt" \
        --trunc-sparsity $TRUNC --teacher-sparsity $t_sparsity --target-sparsity $TARGET --lam $LAM \
        --ta-metric $METRIC $final --best-checkpoint-metric ${METRIC}_s$TARGET
    chosen=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['sparsity'])" $T/minidisc-r$round/ta/ta.json)
    echo "   round $round: assistant at sparsity $chosen"
    teacher=$T/minidisc-r$round/ta/model.pt; from=$T/minidisc-r$round/ta; t_sparsity=$chosen
    [ "$chosen" = "$TARGET" ] && break
    assistants+=($chosen)
done
ta_label="no assistant"; [ ${#assistants[@]} -gt 0 ] && ta_label="assistant ${assistants[*]}%"
# the student at the target, as a checkpoint directory the report reads
mkdir -p $T/minidisc; ln -sf "$WORK/$from/model.pt" $T/minidisc/checkpoint_best.pt
echo "$from" > $T/minidisc/source

step "3. direct KD: the teacher sliced at $TARGET%, distilled from the teacher"
dense $T/direct-init $TARGET $R/sparse/model.pt
plain $T/direct $T/direct-init $TEACHER

step "4. MaxiDisc: every single-assistant path (one trial each)"
paths=()
for s in ${GRID//,/ }; do
    if python -c "import sys; sys.exit(not 0 < float(sys.argv[1]) < float(sys.argv[2]))" $s $TARGET; then
        dense $T/maxi-$s/init $s $R/sparse/model.pt
        plain $T/maxi-$s/stage1 $T/maxi-$s/init $TEACHER
        dense $T/maxi-$s/target-init $TARGET $T/maxi-$s/stage1/checkpoint_best.pt --map $R/sparse/sparsity.json
        plain $T/maxi-$s/stage2 $T/maxi-$s/target-init $T/maxi-$s/stage1/checkpoint_best.pt
        paths+=($s)
    fi
done

step "5. report: raw dev text to labels on this machine"
rows=(--student "direct KD=$T/direct:$BIN" --transformer "MiniDisc ($ta_label)=$T/minidisc")
for s in "${paths[@]}"; do rows+=(--student "MaxiDisc via $s%=$T/maxi-$s/stage2:$BIN"); done
todo $T/report.json && run md-report python "$REPO/demo/report.py" --dev "$DEV_TSV" $COLUMNS --teacher teacher/ckpt \
    "${rows[@]}" --output $T/report --title "MiniDisc on $TASK at $TARGET% sparsity (MiniLM teacher)"
last_table "$WORK/logs/md-report.log"
# each path's training time (its stages' seconds files) and trials, beside the report's rows
python - "$T" "${assistants[*]:-}" "${paths[@]}" <<'PY'
import json, os, sys
t, assistants, paths = sys.argv[1], sys.argv[2].split(), sys.argv[3:]
def seconds(*dirs):
    return sum(int(open(os.path.join(t, d, "seconds")).read()) for d in dirs if os.path.exists(os.path.join(t, d, "seconds")))
rounds = sorted(d for d in os.listdir(t) if d.startswith("minidisc-r"))
report = json.load(open(os.path.join(t, "report.json")))["models"]
rows = {"direct KD": {"trials": 1, "train_seconds": seconds("direct")},
        f"MiniDisc ({'assistant ' + ' '.join(assistants) + '%' if assistants else 'no assistant'})":
            {"trials": 1, "train_seconds": seconds(*rounds), "assistants": [float(a) for a in assistants]}}
for s in paths:
    rows[f"MaxiDisc via {s}%"] = {"trials": 1, "train_seconds": seconds(f"maxi-{s}/stage1", f"maxi-{s}/stage2")}
for name, row in rows.items():
    row.update({k: report[name][k] for k in ("accuracy", "f1", "parameters", "sentences_per_second") if k in report.get(name, {})})
maxi = [r for n, r in rows.items() if n.startswith("MaxiDisc")]
out = {"models": rows, "maxidisc_trials": len(maxi),
       "maxidisc_train_seconds": sum(r["train_seconds"] for r in maxi)}
with open(os.path.join(t, "summary.json.part"), "w") as f:
    json.dump(out, f, indent=1)
os.replace(os.path.join(t, "summary.json.part"), os.path.join(t, "summary.json"))
print(json.dumps({n: {k: r.get(k) for k in ("accuracy", "f1", "train_seconds")} for n, r in rows.items()}))
PY
