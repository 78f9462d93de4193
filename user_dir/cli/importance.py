"""distill-importance: Taylor (ROSITA) or mask-gradient (MiniDisc) importance of a transformer
classifier's heads and FFN neurons."""

import argparse
import json

from . import run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="distill-importance",
        description="Score every attention head and FFN neuron of a fine-tuned transformer classifier "
        "(hf_bert, pruned_roberta) by Taylor importance |w| * sum over batches |dL/dw| (ROSITA) or by mask "
        "gradients (--method mask, MiniDisc), on a split "
        "of a glue_distillation data-bin, without updating the weights. Writes the JSON file distill-prune "
        "and distill-sparsify read (format in user_dir/compress/importance.py).",
    )
    p.add_argument("--checkpoint", required=True, help="the model to score (a fairseq checkpoint)")
    p.add_argument("--data", required=True, help="data-bin in the model's dictionary (input0/, label/)")
    p.add_argument("--split", default="train", help="split to score on (default: train)")
    p.add_argument("--loss", default="ce", choices=["ce", "soft_ce", "kl"],
                   help="ce: gold labels; soft_ce / kl: distillation loss against the teacher")
    p.add_argument("--teacher-checkpoint", default="", help="teacher run online for --loss soft_ce/kl")
    p.add_argument("--distillation-target", action="store_true",
                   help="teacher logits from DATA/distill/SPLIT.npy instead of a teacher checkpoint")
    p.add_argument("--temperature", type=float, default=1.0, help="softmax temperature of the KD loss")
    p.add_argument("--method", default="taylor", choices=["taylor", "mask"],
                   help="taylor: |w| * sum |dL/dw| (ROSITA); mask: sum |dL/d mask| of head and neuron masks, "
                        "each layer normalised by its L2 norm (MiniDisc, which scores on dev: --split valid)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-sentences", type=int, default=0, help="score on the first N sentences (0: all)")
    p.add_argument("--output", required=True, help="JSON file to write")
    return p


def main(argv=None) -> dict:
    from ..compress.importance import score_checkpoint

    a = get_parser().parse_args(argv)
    scores = score_checkpoint(a.checkpoint, a.data, a.output, split=a.split, loss=a.loss,
                              teacher_checkpoint=a.teacher_checkpoint, distillation_target=a.distillation_target,
                              temperature=a.temperature, batch_size=a.batch_size, max_sentences=a.max_sentences,
                              method=a.method)
    summary = {"output": a.output, "batches": scores["batches"], "sentences": scores["sentences"]}
    print(json.dumps(summary))
    return summary


def cli_main() -> None:
    run_main(main)


if __name__ == "__main__":
    cli_main()
