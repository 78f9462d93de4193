"""distill-split-sentences: documents (one per line) to unique sentences, one per line."""

import argparse
import json

from . import run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="distill-split-sentences",
        description="Split every input line (a document: a review) into sentences with spaCy's rule-based "
        "sentencizer, write each as its tokens joined by spaces (lower-cased unless --keep-case: SST-2's "
        "form), drop duplicates, fragments and the sentences of --exclude files (case and spacing ignored). "
        "Parallel over --workers, resumable after a kill, atomic output; statistics in OUTPUT.json.",
    )
    p.add_argument("--input", required=True, nargs="+", metavar="FILE", help="text files, one document per line")
    p.add_argument("--output", required=True, metavar="FILE")
    p.add_argument("--exclude", nargs="*", default=[], metavar="FILE",
                   help="text files whose lines must not appear in the output (the task's dev sentences)")
    p.add_argument("--min-tokens", type=int, default=3, metavar="N",
                   help="drop sentences of fewer tokens (default: %(default)s)")
    p.add_argument("--keep-case", action="store_true", help="do not lower-case")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="processes (default: 1)")
    return p


def main(argv=None) -> dict:
    from ..preprocess.sentences import split_sentences

    args = get_parser().parse_args(argv)
    stats = split_sentences(args.input, args.output, args.exclude, args.min_tokens, not args.keep_case,
                            args.workers)
    print(json.dumps({k: v for k, v in stats.items() if k not in ("inputs", "exclude")}))
    return stats


def cli_main() -> None:
    run_main(main)


if __name__ == "__main__":
    cli_main()
