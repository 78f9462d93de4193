#!/usr/bin/env bash
# Sentence pairs end to end on MRPC: the teacher (all-MiniLM-L6-v2 fine-tuned on pairs) labels
# the pairs and their augmentations (one side or both changed); the siamese BiLSTM and the
# DAN bi-encoder learn from its logits. The report gives accuracy and F1 of each model.
#
#   bash demo/mrpc.sh          # about 20 minutes on 2 CPU cores
#   bash demo/mrpc.sh --smoke  # the same steps on a slice with tiny settings (the tests' check)
#
# Steps already done are skipped on rerun; each step's full log is in WORK/logs/.
# Environment: DATA (GLUE MRPC dir), WORK, WEIGHTS.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DATA=${DATA:-$REPO/../shared/data/glue/MRPC}
WORK=${WORK:-$REPO/demo/work/mrpc}
WEIGHTS=${WEIGHTS:-$REPO/.cache/weights/all-MiniLM-L6-v2}
MODE=default
case ${1:-} in
    "") ;;
    --smoke) MODE=smoke ;;
    *) echo "unknown option: $1 (use --smoke)" >&2; exit 2 ;;
esac
source "$REPO/demo/lib.sh"
lock_work "$WORK"
cd "$WORK"
SAMPLES=4; EPOCHS=3; ROWS=1000000; DEV_ROWS=1000000; KD_EPOCHS=3; DAN_EPOCHS=6
[ $MODE = smoke ] && { SAMPLES=1; EPOCHS=1; ROWS=300; DEV_ROWS=100; KD_EPOCHS=1; DAN_EPOCHS=1; }
label_dict="$REPO/data-bin-templates/sst2-binary/label/dict.txt"  # classes 0 and 1, as MRPC's

step "1. pairs and labels (header, with its byte-order mark, dropped)"
for split in train dev; do
    if [ ! -s $split.label ]; then
        rows=$ROWS; [ $split = dev ] && rows=$DEV_ROWS
        # sed, not head: no SIGPIPE under pipefail
        sed -n "2,$((rows + 1))p" "$DATA/$split.tsv" | cut -f4,5 > $split.pairs.tsv.part
        sed -n "2,$((rows + 1))p" "$DATA/$split.tsv" | cut -f1 > $split.label.part
        mv $split.pairs.tsv.part $split.pairs.tsv; mv $split.label.part $split.label
    fi
    wc -l $split.pairs.tsv
done

step "2. import the teacher and WordPiece-encode both sides"
# model.pt is written last: once it is there, the import is whole
todo teacher/base/model.pt && run import-teacher distill-import-hf --hf-dir "$WEIGHTS" --output teacher/base
TOKENIZER=$WORK/teacher/base/tokenizer.json
encode_pairs() {  # encode_pairs NAME: NAME.pairs.tsv -> NAME.{a,b}.txt and NAME.{a,b}.bpe
    cut -f1 $1.pairs.tsv > $1.a.txt; cut -f2 $1.pairs.tsv > $1.b.txt
    for side in a b; do
        run encode-$1-$side distill-bpe-encode --bpe wordpiece --wordpiece-vocab $TOKENIZER \
            --input $1.$side.txt --output $1.$side.bpe
    done
}
for split in train dev; do [ -s $split.b.bpe ] || encode_pairs $split; done

step "3. fine-tune the teacher on pairs: [CLS] a [SEP] b [SEP], as BERT"
if todo teacher/data-bin/label/valid.idx; then
    for k in 0 1; do
        side=$([ $k = 0 ] && echo a || echo b)
        run teacher-bin-$side fairseq-preprocess --only-source --srcdict teacher/base/dict.txt \
            --trainpref train.$side.bpe --validpref dev.$side.bpe --destdir teacher/data-bin/input$k --workers 2
    done
    run teacher-bin-label fairseq-preprocess --only-source --srcdict "$label_dict" --trainpref train.label \
        --validpref dev.label --destdir teacher/data-bin/label --workers 2
fi
finetune_teacher "$WORK/teacher/data-bin" $(wc -l < train.label) $EPOCHS 5e-5 10

step "4. augment the pairs (originals first; one side or both changed) and label everything"
todo train.aug.pairs.tsv && run augment distill-augment --input train.pairs.tsv --output train.aug.pairs.tsv \
    --input-format tsv --text-column 0 1 --samples-per-example $SAMPLES --workers 2
wc -l train.aug.pairs.tsv
[ -s train.aug.b.bpe ] || encode_pairs train.aug
for name in train.aug dev; do
    todo teacher/$name.npy && run logits-$name distill-teacher-logits --checkpoint-dir teacher/ckpt \
        --input $name.pairs.tsv --input-format tsv --text-column 0 1 --output teacher/$name.npy
done

step "5. the siamese BiLSTM on the teacher's tokens"
if todo bilstm-bin/distill/valid.npy; then
    rm -rf bilstm-bin
    for k in 0 1; do
        side=$([ $k = 0 ] && echo a || echo b)
        run bilstm-bin-$side fairseq-preprocess --only-source --srcdict teacher/base/dict.txt \
            --trainpref train.aug.$side.bpe --validpref dev.$side.bpe --destdir bilstm-bin/input$k --workers 2
    done
    run bilstm-bin-label fairseq-preprocess --only-source --srcdict "$label_dict" --validpref dev.label \
        --destdir bilstm-bin/label
    mkdir -p bilstm-bin/distill
    # class orders before logits; valid.npy last: it marks the data-bin as whole
    cp teacher/train.aug.json bilstm-bin/distill/train.json; cp teacher/train.aug.npy bilstm-bin/distill/train.npy
    cp teacher/dev.json bilstm-bin/distill/valid.json; cp teacher/dev.npy bilstm-bin/distill/valid.npy
fi
[ -e bilstm/done ] || { train bilstm bilstm fairseq-train bilstm-bin --user-dir "$REPO/user_dir" \
    --task glue_distillation --num-classes 2 \
    --distillation-target --arch bilstm_dbert_siamese --encoder-embed-dim 384 \
    --embed-init teacher/base/model.pt --criterion distillation --optimizer mixed_adam --lr 1e-3 \
    --batch-size 32 --max-epoch $KD_EPOCHS --bpe wordpiece --wordpiece-vocab "$TOKENIZER" --num-workers 0 \
    --best-checkpoint-metric accuracy --maximize-best-checkpoint-metric \
    --save-dir bilstm --no-epoch-checkpoints --log-format simple --log-interval 200; touch bilstm/done; }

step "6. the DAN bi-encoder on n-grams of both sides"
if todo vocab.txt; then
    cat train.aug.a.txt train.aug.b.txt > ngram-corpus.txt
    run ngram-dict distill-ngram-dict --input ngram-corpus.txt --output vocab.txt --ngram-range 1 3 \
        --max-features 300000 --workers 2
fi
if todo dan-bin/distill/valid.npy; then
    rm -rf dan-bin
    for k in 0 1; do
        side=$([ $k = 0 ] && echo a || echo b)
        for split in train.aug dev; do
            run ngrams-$split-$side distill-extract-ngrams --vocab vocab.txt --input $split.$side.txt \
                --output $split.$side.ngrams --workers 2
        done
        run dan-bin-$side fairseq-preprocess --only-source --srcdict vocab.txt --trainpref train.aug.$side.ngrams \
            --validpref dev.$side.ngrams --destdir dan-bin/input$k --workers 2
    done
    cp vocab.txt.json dan-bin/input0/ngrams.json
    mkdir -p dan-bin/distill
    cp -r bilstm-bin/label dan-bin/
    cp bilstm-bin/distill/*.json dan-bin/distill/; cp bilstm-bin/distill/train.npy dan-bin/distill/
    cp bilstm-bin/distill/valid.npy dan-bin/distill/
fi
[ -e dan/done ] || { train dan dan fairseq-train dan-bin --user-dir "$REPO/user_dir" \
    --task feature_based_sentence_pair_prediction \
    --distillation-target --num-classes 2 --arch feature_based_linear_biencoder_model \
    --encoder-embed-dim 128 --hidden-dim 128 --pooler-dropout 0.3 --feature-dropout 0.2 \
    --criterion distillation --optimizer mixed_adam --lr 1e-3 --batch-size 32 --max-epoch $DAN_EPOCHS \
    --best-checkpoint-metric accuracy --maximize-best-checkpoint-metric \
    --save-dir dan --no-epoch-checkpoints --log-format simple --log-interval 200; touch dan/done; }

step "7. report: accuracy and F1 from raw dev pairs"
DEV_TSV=$DATA/dev.tsv
if [ $MODE = smoke ]; then head -n $((DEV_ROWS + 1)) "$DATA/dev.tsv" > dev.tsv; DEV_TSV=$WORK/dev.tsv; fi
run report python "$REPO/demo/report.py" --dev "$DEV_TSV" --text-column 3 4 --label-column 0 \
    --teacher teacher/ckpt --student "BiLSTM siamese KD+aug=bilstm:bilstm-bin" \
    --student "DAN bi-encoder KD+aug=dan:dan-bin" --output report --title "Distillation on MRPC (pairs)"
last_table "$WORK/logs/report.log"
