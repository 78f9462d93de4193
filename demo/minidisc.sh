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
#   4. MaxiDisc: for each grid sparsity s from 50 (MiniDisc's candidates; with --full from 10) to
#      below the target, slice at s, distil, slice the result at the target, distil from it;
#   4b. other KD paths (--paths, default "2L 4L,2L"): each a comma-separated list of sizes, a grid
#      sparsity or NL (the bottom N layers kept, from the teacher or the previous stage), distilled
#      stage by stage (e.g. 6 layers -> 4 -> 2: the layer-dropped students beside the sparse ones);
#   4c. when MiniDisc chose an assistant: the target also trained alone from it (plain KD, no
#      sandwich in the last round), one more row beside MiniDisc's;
#   5. report: dev metric, parameters, CPU throughput of each (minidisc/TARGET/report.json);
#   6. Hugging Face export of each student (distill-export-hf; a shape it cannot express is
#      recorded as refused), and each path's stages, wall time and export (minidisc/TARGET/summary.json).
# Layout: minidisc/{importance.json,sparse/} (the reordered teacher and its sparsity map),
# minidisc/stages/<path so far> (e.g. stages/80, stages/80-90, stages/4L-2L: one KD stage each, shared
# by the paths and targets through it), minidisc/TARGET/{minidisc-r1,minidisc-r2,minidisc-last,
# report.json,summary.json,paths.tsv,hf/} (minidisc-last: step 4c).
# Every KD stage is MiniDisc's loss: hidden-state MSE over every layer on real tokens plus soft
# cross-entropy with the teacher (T = 1), equally weighted, on the teacher's gold training texts.
#
#   bash demo/minidisc.sh                 # MRPC (the seed's example; demo/mrpc.sh's teacher)
#   bash demo/minidisc.sh --task sst2     # SST-2 (demo/sst2.sh's teacher)
#   ... --target 95                       # the 95% target instead of 90
#   ... --paths "2L 4L,2L 80,4L"           # the extra KD paths of step 4b ("" for none)
#   ... --smoke                           # the same steps on slices with tiny settings
#   ... --full                            # MiniDisc's schedule (10 epochs per stage), and MaxiDisc
#                                         # through every grid assistant (10% to 85%)
#
# Runs the task's main demo first if its report is missing. Finished stages are skipped on rerun
# (a stage's done file is written last); fairseq-train resumes from its last checkpoint.
# Environment: DATA, WORK (the main demo's work dir).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
TASK=mrpc; MODE=default; TARGET=90
PATHS="2L 4L,2L"  # the other KD paths (step 4b): layer-dropped students, beside the sparse ones
while [ $# -gt 0 ]; do
    case $1 in
        --task) TASK=$2; shift ;;
        --target) TARGET=$2; shift ;;
        --paths) PATHS=$2; shift ;;
        --smoke) MODE=smoke ;;
        --full) MODE=full ;;
        *) echo "unknown option: $1 (use --task mrpc|sst2, --target S, --paths \"P ...\", --smoke or --full)" >&2; exit 2 ;;
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

# EPOCHS: per KD stage over the teacher's gold training texts (MiniDisc: 10 for MRPC; 2 here and
# MaxiDisc from 50% keep the default MRPC run to about 80 minutes on 2 CPU cores after the main
# demo; --full restores both);
# LR and BATCH: MiniDisc's MRPC settings are 3e-5 and 16; LAM 0.2 and the grid are its defaults.
EPOCHS=2; LR=3e-5; BATCH=16; LAM=0.2; TRUNC=50; TA_ROUNDS=2; GRID=0,10,20,30,40,50,60,70,80,85,90,95
MAXI_FROM=$TRUNC  # MaxiDisc's assistants: the grid from here to the target (MiniDisc's candidates)
VALIDATE=0  # updates between validations (0: each epoch)
CAP=""      # --max-update of every stage (the smoke run's few updates)
[ $TASK = sst2 ] && { EPOCHS=1; BATCH=32; LR=5e-5; }
case $MODE in
    full) EPOCHS=10; MAXI_FROM=0 ;;  # every grid assistant, the nearly dense ones too
    # LAM 0: the best-scoring view, 50% on a tie, so the smoke run takes the assistant branch
    smoke) EPOCHS=1; GRID=0,50,90,95; VALIDATE=2; CAP="--max-update 4"; LAM=0 ;;
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

# path SIZES...: KD through each size in turn, each stage initialised from the previous stage's best
# (the first from the teacher) and taught by it. A size is a grid sparsity (the model sliced there
# by the sparsity map) or NL (its bottom N layers kept); sparsities come before layer counts (the
# map is the full-depth model's). A stage's directory is named by the path up to it (stages/80,
# stages/80-90, stages/4L-2L), so paths sharing a prefix, and the 90 and 95 targets, share stages.
path() {
    local name="" prev=$R/sparse/model.pt teacher=$TEACHER layered="" size dir
    for size in "$@"; do
        name=${name:+$name-}$size; dir=$R/stages/$name
        if [[ $size =~ ^([1-9][0-9]*)L$ ]]; then
            [ -z "$layered" ] && [ "$prev" = $R/sparse/model.pt ] && prev=$TEACHER
            layered=1
            todo $dir/init/model.pt && run extract-$name distill-extract-student --checkpoint $prev \
                --layers $(seq -s, 0 $((BASH_REMATCH[1] - 1))) --output $dir/init
        elif [[ $size =~ ^[0-9]+(\.[0-9]+)?$ ]] && [ -z "$layered" ]; then
            if [ "$prev" = $R/sparse/model.pt ]; then dense $dir/init $size $prev
            else dense $dir/init $size $prev --map $R/sparse/sparsity.json; fi
        else
            echo "path $*: $size is neither a sparsity nor NL layers, or a sparsity follows a layer count" >&2
            exit 2
        fi
        plain $dir $dir/init $teacher
        prev=$dir/checkpoint_best.pt; teacher=$prev
    done
    PATH_DIR=$R/stages/$name
}
label() {  # label SIZES...: the report's name of a path
    if [ $# = 1 ] && [ "$1" = "$TARGET" ]; then echo "direct KD"
    elif [ $# = 2 ] && [ "$2" = "$TARGET" ] && [[ $1 != *L ]]; then echo "MaxiDisc via $1%"
    else local out="" size; for size in "$@"; do [[ $size == *L ]] || size=$size%; out+=${out:+→}$size; done
         echo "KD $out"; fi
}
# every path's report row, and its stage directories for the summary (tab-separated)
rows=(); : > $T/paths.tsv.part
add_path() {  # add_path SIZES...: run it and add its row
    path "$@"
    local name stages="" prefix="" size
    name=$(label "$@")
    for size in "$@"; do prefix=${prefix:+$prefix-}$size; stages+=" $R/stages/$prefix"; done
    rows+=(--student "$name=$PATH_DIR:$BIN")
    printf '%s\t%s\t%s\n' "$name" "$PATH_DIR" "${stages# }" >> $T/paths.tsv.part
}

step "3. direct KD: the teacher sliced at $TARGET%, distilled from the teacher"
add_path $TARGET

step "4. MaxiDisc: every single-assistant path from the grid at or above $MAXI_FROM% (one trial each)"
for s in ${GRID//,/ }; do
    if python -c "import sys; s, lo, t = map(float, sys.argv[1:]); sys.exit(not (0 < s < t and s >= lo))" \
        $s $MAXI_FROM $TARGET; then
        add_path $s $TARGET
    fi
done

if [ -n "$PATHS" ]; then
    step "4b. the other paths: $PATHS"
    for p in $PATHS; do add_path ${p//,/ }; done
fi

# MiniDisc's last assistant with the target trained alone from it (plain KD, as MaxiDisc's second
# stages), beside the sandwich last round: on SST-2 that round lost what the assistant gave (README)
if [ ${#assistants[@]} -gt 0 ]; then
    step "4c. MiniDisc's assistant, the last stage alone: the $TARGET% student by plain KD from it"
    last_ta=$T/minidisc-r${#assistants[@]}/ta; last=$T/minidisc-last
    dense $last/init $TARGET $last_ta/model.pt --map $R/sparse/sparsity.json
    plain $last $last/init $last_ta/model.pt
    name="MiniDisc ($ta_label), last stage alone"
    rows+=(--student "$name=$last:$BIN")
    stages=$(for i in $(seq 1 ${#assistants[@]}); do printf '%s ' $T/minidisc-r$i; done)
    printf '%s\t%s\t%s\n' "$name" "$last" "$stages$last" >> $T/paths.tsv.part
fi
mv $T/paths.tsv.part $T/paths.tsv

step "5. report: raw dev text to labels on this machine"
rows=(--transformer "MiniDisc ($ta_label)=$T/minidisc" "${rows[@]}")
# redone when the rows change (another --paths)
printf '%s\n' "${rows[@]}" > $T/report.rows.new
cmp -s $T/report.rows.new $T/report.rows || rm -f $T/report.json
todo $T/report.json && run md-report python "$REPO/demo/report.py" --dev "$DEV_TSV" $COLUMNS --teacher teacher/ckpt \
    "${rows[@]}" --output $T/report --title "MiniDisc on $TASK at $TARGET% sparsity (MiniLM teacher)"
mv $T/report.rows.new $T/report.rows
last_table "$WORK/logs/md-report.log"

step "6. Hugging Face export of each student where its shape allows (distill-export-hf)"
: > $T/hf.tsv.part
while IFS=$'\t' read -r name dir stages; do
    slug=$(basename $dir); out=$T/hf/$slug; log=$WORK/logs/hf-$TARGET-$slug.log
    if [ ! -s $out/model.safetensors ] && [ ! -s $out.refused ]; then
        mkdir -p $T/hf; rc=0
        distill-export-hf --checkpoint $dir/checkpoint_best.pt --data-bin $BIN --output $out > $log 2>&1 || rc=$?
        # exit 2: a shape Hugging Face cannot express, its message the log's last line
        [ $rc = 2 ] && sed -n '$s/.*| //p' $log > $out.refused
        [ $rc = 0 ] || [ $rc = 2 ] || { echo "failed: distill-export-hf (see $log)" >&2; exit 1; }
    fi
    if [ -s $out/model.safetensors ]; then result="exported: $out"; else result="refused: $(cat $out.refused)"; fi
    echo "   $name: $result"
    printf '%s\t%s\n' "$name" "$result" >> $T/hf.tsv.part
done < <(printf 'MiniDisc\t%s\t\n' $T/minidisc; cat $T/paths.tsv)
mv $T/hf.tsv.part $T/hf.tsv

# each path's training time (its stages' seconds files), trials and export, beside the report's rows
python - "$T" "$ta_label" "${assistants[*]:-}" <<'PY'
import json, os, sys
t, ta_label, assistants = sys.argv[1], sys.argv[2], sys.argv[3].split()
def seconds(*dirs):
    return sum(int(open(os.path.join(d, "seconds")).read()) for d in dirs if os.path.exists(os.path.join(d, "seconds")))
report = json.load(open(os.path.join(t, "report.json")))["models"]
hf = dict(line.rstrip("\n").split("\t", 1) for line in open(os.path.join(t, "hf.tsv")))
rounds = sorted(os.path.join(t, d) for d in os.listdir(t) if d.startswith("minidisc-r"))
minidisc = f"MiniDisc ({ta_label})"
rows = {minidisc: {"trials": 1, "train_seconds": seconds(*rounds), "assistants": [float(a) for a in assistants],
                   "hf_export": hf["MiniDisc"]}}
for line in open(os.path.join(t, "paths.tsv")):
    name, final, stages = line.rstrip("\n").split("\t")
    rows[name] = {"trials": 1, "stages": stages.split(), "train_seconds": seconds(*stages.split()),
                  "hf_export": hf[name]}
for name, row in rows.items():
    row.update({k: report[name][k] for k in ("accuracy", "f1", "parameters", "sentences_per_second")
                if k in report.get(name, {})})
maxi = [r for n, r in rows.items() if n.startswith("MaxiDisc")]
out = {"models": rows, "maxidisc_trials": len(maxi),
       "maxidisc_train_seconds": sum(r["train_seconds"] for r in maxi)}
with open(os.path.join(t, "summary.json.part"), "w") as f:
    json.dump(out, f, indent=1)
os.replace(os.path.join(t, "summary.json.part"), os.path.join(t, "summary.json"))
print(json.dumps({n: {k: r.get(k) for k in ("accuracy", "f1", "train_seconds")} for n, r in rows.items()}))
PY
