"""distill-teacher-logits: a fine-tuned teacher's raw logits for every line of a file."""

import argparse
import json

from . import run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="distill-teacher-logits",
        description="Run a fine-tuned fairseq classifier (sentence_prediction) over raw text or TSV "
        "and write FILE.npy [N, C] (row i = example i) plus FILE.json (class order). Sharded over "
        "workers with submitit, resumable after a kill, atomic output, GPU when present.",
    )
    p.add_argument("--checkpoint-dir", required=True, metavar="DIR",
                   help="teacher directory: the checkpoint, and input0/ label/ dictionaries unless the "
                        "checkpoint's data path still holds them")
    p.add_argument("--checkpoint-file", default="checkpoint_best.pt", metavar="FILE")
    p.add_argument("--input", required=True, metavar="FILE", help="text (one example per line) or TSV")
    p.add_argument("--output", required=True, metavar="FILE.npy")
    p.add_argument("--input-format", choices=["text", "tsv"], default="text")
    p.add_argument("--text-column", type=int, nargs="+", default=[0], metavar="N",
                   help="0-based TSV column(s); two for sentence pairs (default: 0)")
    p.add_argument("--header", action="store_true", help="skip the first line")
    p.add_argument("--batch-tokens", type=int, default=8192, metavar="N",
                   help="padded tokens per batch (default: 8192)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="jobs at a time (default: 1, in-process)")
    p.add_argument("--cluster", choices=["local", "slurm"], default="local",
                   help="submitit executor for --workers > 1 (default: local processes)")
    p.add_argument("--slurm-partition", default=None, metavar="P")
    return p


def main(argv=None) -> dict:
    from ..teacher import teacher_logits_file

    args = get_parser().parse_args(argv)
    result = teacher_logits_file(args.checkpoint_dir, args.input, args.output, args.input_format,
                                 args.text_column, args.header, args.checkpoint_file, args.batch_tokens,
                                 args.workers, args.cluster, args.slurm_partition)
    print(json.dumps(result))
    return result


def cli_main() -> None:
    run_main(main)


if __name__ == "__main__":
    cli_main()
