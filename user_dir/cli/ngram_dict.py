"""distill-ngram-dict: the top-K n-grams of a corpus, as a fairseq dict.txt."""

import argparse

from ..preprocess.ngrams import TOKENIZERS, write_vocab
from . import run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="distill-ngram-dict",
        description="Count the n-grams of text files (one example per line) and keep the "
        "most frequent. Writes VOCAB ('ngram count' per line, usable as "
        "fairseq-preprocess --srcdict) and VOCAB.json (the settings extraction reuses).",
    )
    p.add_argument("--input", nargs="+", required=True, metavar="FILE", help="text files, one example per line")
    p.add_argument("--output", required=True, metavar="VOCAB", help="vocabulary file to write")
    p.add_argument("--ngram-range", nargs=2, type=int, default=[1, 4], metavar=("MIN", "MAX"),
                   help="n-gram lengths to count (default: 1 4, as in the paper)")
    p.add_argument("--max-features", type=int, default=1_000_000, metavar="K",
                   help="vocabulary size: the K most frequent n-grams (default: 1000000)")
    p.add_argument("--tokenizer", choices=sorted(TOKENIZERS), default="default",
                   help="'default': lower-case words and punctuation; 'sklearn': CountVectorizer's "
                   "tokens, as the paper; 'whitespace': pre-tokenized text (default: default)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="processes (default: 1)")
    p.add_argument("--max-ngrams-in-memory", type=int, default=5_000_000, metavar="M",
                   help="distinct n-grams each worker holds before pruning the rarest "
                   "(about 50 bytes each; default: 5000000)")
    return p


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    write_vocab(args.input, args.output, args.max_features, args.ngram_range, args.tokenizer,
                args.workers, args.max_ngrams_in_memory)


def cli_main() -> None:
    run_main(main)


if __name__ == "__main__":
    cli_main()
