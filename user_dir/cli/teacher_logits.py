"""distill-teacher-logits: a fine-tuned teacher's raw logits for every line of a file."""

import argparse
import json

from . import run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="distill-teacher-logits",
        description="Run a fine-tuned fairseq classifier (sentence_prediction) over raw text or TSV "
        "and write FILE.npy [N, C] (row i = example i) plus FILE.json (class order). Sharded over "
        "workers with submitit, resumable after a kill, atomic output, GPU when present (--device).",
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
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="jobs, each loading the teacher once for a contiguous range of shards (default: 1, "
                        "in-process); local jobs share the visible GPUs, or the CPU cores")
    p.add_argument("--cluster", choices=["local", "slurm"], default="local",
                   help="submitit executor for --workers > 1 (default: local processes)")
    p.add_argument("--slurm-partition", default=None, metavar="P")
    p.add_argument("--device", default="auto", metavar="D",
                   help="auto (default: CUDA when available), cpu, cuda or cuda:N; with local --workers, "
                        "auto and cuda put job j on GPU j modulo the GPU count; with SLURM, cuda asks one "
                        "GPU per job")
    p.add_argument("--shard-bytes", type=int, default=8 << 20, metavar="N",
                   help="input bytes per shard (default: 8 MiB), the unit of resume and of the work split "
                        "between --workers; results do not depend on --workers")
    p.add_argument("--max-positions", type=int, metavar="P",
                   help="the teacher's window, when shorter than its checkpoint's --max-positions: the P "
                        "the fine-tuning data was cut for (distill-bpe-encode --max-tokens P-2)")
    p.add_argument("--keep-head", type=int, metavar="H",
                   help="cut long texts to their first H tokens and their tail, as distill-bpe-encode "
                        "--keep-head H cut the fine-tuning data (default: the head alone)")
    p.add_argument("--threads", type=int, default=0, metavar="N",
                   help="CPU threads per job (default: all cores in-process, cores / workers with --workers); "
                        "CPU logits differ by about 1e-7 between thread counts, not between worker counts")
    return p


def main(argv=None) -> dict:
    from ..preprocess.teacher_logits import teacher_logits_file

    args = get_parser().parse_args(argv)
    result = teacher_logits_file(args.checkpoint_dir, args.input, args.output, args.input_format,
                                 args.text_column, args.header, args.checkpoint_file, args.batch_tokens,
                                 args.workers, args.cluster, args.slurm_partition, args.shard_bytes,
                                 args.device, args.threads, args.max_positions, args.keep_head)
    print(json.dumps(result))
    return result


def cli_main() -> None:
    run_main(main)


if __name__ == "__main__":
    cli_main()
