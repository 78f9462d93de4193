"""distill-sparsify: MiniDisc's reorder and sparsity map, or a model sliced to one grid sparsity."""

import argparse
import json

from . import run_main


def get_parser() -> argparse.ArgumentParser:
    from ..compress.sparsity import DEFAULT_GRID

    p = argparse.ArgumentParser(
        prog="distill-sparsify",
        description="Reorder a transformer classifier's heads and FFN neurons by importance (most important "
        "first; the same function) and rank them globally into a sparsity map: for each grid sparsity, the "
        "heads and neurons each layer keeps (MiniDisc; user_dir/compress/sparsity.py). Writes OUTPUT/model.pt "
        "(pruned_roberta, the map in it; last, the marker), model-args.txt and sparsity.json. --densify S "
        "slices the model to sparsity S instead (a layer left with no head or neuron skips that sublayer).",
    )
    p.add_argument("--checkpoint", required=True, help="the model (hf_bert, pruned_roberta)")
    p.add_argument("--importance", default="",
                   help="its scores (distill-importance --method mask); without: --densify slices a checkpoint "
                        "that carries a map (a distill-sparsify output, or a model trained from one)")
    p.add_argument("--output", required=True, metavar="DIR", help="directory to write")
    p.add_argument("--grid", default=",".join(str(s) for s in DEFAULT_GRID),
                   help="sparsities in percent, compared as numbers (default: %(default)s)")
    p.add_argument("--multiple", type=int, default=8,
                   help="each layer's removed FFN neurons rounded to a multiple of this (default 8; 1: exact)")
    p.add_argument("--map", default="", help="without --importance: the map to slice by (sparsity.json, or a "
                   "checkpoint carrying one; default: the checkpoint's own)")
    p.add_argument("--densify", type=float, default=None, metavar="S", help="slice to this grid sparsity")
    return p


def main(argv=None) -> dict:
    from ..compress.sparsity import sparsify_checkpoint

    a = get_parser().parse_args(argv)
    summary = sparsify_checkpoint(a.checkpoint, a.importance, a.output, grid=a.grid, multiple=a.multiple,
                                  densify_at=a.densify, map_path=a.map)
    print(json.dumps(summary))
    return summary


def cli_main() -> None:
    run_main(main)


if __name__ == "__main__":
    cli_main()
