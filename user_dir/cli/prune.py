"""distill-prune: one-step structured pruning of a transformer classifier to pruned_roberta."""

import argparse
import json

from . import run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="distill-prune",
        description="Prune a transformer classifier checkpoint (hf_bert, pruned_roberta) in one step "
        "(ROSITA): keep the bottom --num-layers (or the --layers listed), the --keep-heads heads and "
        "--ffn-dim FFN neurons of highest importance in each layer (--importance, from distill-importance), "
        "and factorise the word embedding to --embed-rank by truncated SVD. Writes OUTPUT/model.pt "
        "(pruned_roberta; last, the marker), model-args.txt (its fairseq-train flags) and pruning.json. "
        "Keeping everything reproduces the input model.",
    )
    p.add_argument("--checkpoint", required=True, help="the model to prune")
    p.add_argument("--output", required=True, metavar="DIR", help="directory to write")
    p.add_argument("--importance", default="", help="scores from distill-importance (for heads and FFN)")
    p.add_argument("--num-layers", type=int, default=0, help="keep the bottom N layers")
    p.add_argument("--layers", default="", help="keep these layers, e.g. 0,2,4 (instead of --num-layers)")
    p.add_argument("--keep-heads", type=int, default=None, help="attention heads kept in every layer")
    p.add_argument("--ffn-dim", type=int, default=None, help="FFN neurons kept in every layer")
    p.add_argument("--embed-rank", type=int, default=0, help="rank of the word embedding (0: unchanged)")
    return p


def main(argv=None) -> dict:
    from ..compress.prune import prune_checkpoint

    a = get_parser().parse_args(argv)
    summary = prune_checkpoint(a.checkpoint, a.output, importance_path=a.importance, layers=a.layers,
                               num_layers=a.num_layers, keep_heads=a.keep_heads, ffn_dim=a.ffn_dim,
                               embed_rank=a.embed_rank)
    print(json.dumps({k: summary[k] for k in ("shapes", "parameters_before", "parameters")}))
    return summary


def cli_main() -> None:
    run_main(main)


if __name__ == "__main__":
    cli_main()
