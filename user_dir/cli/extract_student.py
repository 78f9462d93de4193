"""distill-extract-student: a student made of chosen teacher layers (DistilBERT's initialisation)."""

import argparse
import json

from . import run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="distill-extract-student",
        description="Make a student of some of a transformer's layers, with its embeddings and its masked-LM "
        "head (and classification heads) kept: DistilBERT takes layers 0,2,4,7,9,11 of 12. Writes "
        "OUTPUT/model.pt (pruned_roberta; last, the marker), model-args.txt (its fairseq-train flags) and "
        "pruning.json. All layers reproduce the input model.",
    )
    p.add_argument("--checkpoint", required=True, help="the teacher (hf_bert, pruned_roberta; masked LM or classifier)")
    p.add_argument("--layers", required=True, help="layers kept, in order, e.g. 0,2,4")
    p.add_argument("--output", required=True, metavar="DIR", help="directory to write")
    return p


def main(argv=None) -> dict:
    from ..compress.prune import prune_checkpoint

    a = get_parser().parse_args(argv)
    summary = prune_checkpoint(a.checkpoint, a.output, layers=a.layers)
    print(json.dumps({k: summary[k] for k in ("layers", "shapes", "parameters_before", "parameters")}))
    return summary


def cli_main() -> None:
    run_main(main)


if __name__ == "__main__":
    cli_main()
