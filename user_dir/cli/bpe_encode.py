"""distill-bpe-encode: text to space-separated WordPiece tokens, for fairseq-preprocess."""

import argparse

from . import run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="distill-bpe-encode",
        description="Tokenize every input line with --bpe wordpiece (the Hugging Face tokenizer), "
        "one output line per input line, ready for fairseq-preprocess --srcdict TEACHER/dict.txt "
        "(fairseq-preprocess itself applies no BPE).",
    )
    p.add_argument("--wordpiece-vocab", required=True, metavar="FILE",
                   help="tokenizer.json or vocab.txt (distill-import-hf copies both)")
    p.add_argument("--input", required=True, metavar="FILE", help="text, one example per line")
    p.add_argument("--output", required=True, metavar="FILE", help="file to write")
    return p


def main(argv=None) -> int:
    from ..encoders.wordpiece import encode_file

    args = get_parser().parse_args(argv)
    return encode_file(args.wordpiece_vocab, args.input, args.output)


def cli_main() -> None:
    run_main(main)


if __name__ == "__main__":
    cli_main()
