"""distill-extract-ngrams: one line of n-gram features per input line."""

import argparse

from ..preprocess.ngrams import extract_ngrams
from . import run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="distill-extract-ngrams",
        description="Replace every input line by its in-vocabulary n-grams, in text order, "
        "ready for fairseq-preprocess --only-source --srcdict VOCAB. The output has exactly "
        "as many lines as the input; empty lines and lines without known n-grams give empty "
        "lines. Resumes after a kill.",
    )
    p.add_argument("--vocab", required=True, metavar="VOCAB", help="vocabulary from distill-ngram-dict")
    p.add_argument("--input", required=True, metavar="FILE", help="text file, one example per line")
    p.add_argument("--output", required=True, metavar="FILE", help="feature file to write")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="processes (default: 1)")
    return p


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    extract_ngrams(args.vocab, args.input, args.output, args.workers)


def cli_main() -> None:
    run_main(main)


if __name__ == "__main__":
    cli_main()
