"""distill-bpe-encode: text to space-separated BPE tokens, for fairseq-preprocess."""

import argparse

from . import run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="distill-bpe-encode",
        description="Tokenize every input line with fairseq's --bpe wordpiece (the teacher's "
        "Hugging Face tokenizer) or --bpe sentencepiece, one output line per input line, ready for "
        "fairseq-preprocess (which itself applies no BPE). Pass the same --bpe flags to "
        "fairseq-train so that prediction from raw text tokenizes the same way.",
    )
    p.add_argument("--bpe", choices=["wordpiece", "sentencepiece"], default="wordpiece",
                   help="(default: %(default)s)")
    p.add_argument("--wordpiece-vocab", metavar="FILE",
                   help="wordpiece: tokenizer.json or vocab.txt (distill-import-hf copies both)")
    p.add_argument("--sentencepiece-model", metavar="FILE.model",
                   help="sentencepiece: the model; trained on --input first if "
                        "--sentencepiece-vocab-size is given and it does not exist yet")
    p.add_argument("--sentencepiece-vocab-size", type=int, metavar="N",
                   help="sentencepiece: train a unigram model of N pieces on --input when the model is missing")
    p.add_argument("--input", required=True, metavar="FILE", help="text, one example per line")
    p.add_argument("--output", required=True, metavar="FILE", help="file to write")
    p.add_argument("--max-tokens", type=int, metavar="N",
                   help="cut longer lines to N tokens (for a teacher window of P positions: P - 2, "
                        "room for <s> and </s>); the same cut as distill-teacher-logits --max-positions P")
    p.add_argument("--keep-head", type=int, metavar="H",
                   help="with --max-tokens: keep the first H tokens and the last N - H (head + tail) "
                        "rather than the first N")
    return p


def main(argv=None) -> int:
    import os

    from ..fileio import check_input_file, check_output_path
    from ..preprocess.bpe_files import build_bpe, encode_file, train_sentencepiece

    from ..preprocess.truncation import check_window

    args = get_parser().parse_args(argv)
    check_window(args.max_tokens, args.keep_head)
    check_input_file(args.input)  # before training a model on it
    check_output_path(args.output)
    if (args.bpe == "sentencepiece" and args.sentencepiece_vocab_size and args.sentencepiece_model
            and not os.path.exists(args.sentencepiece_model)):
        train_sentencepiece([args.input], args.sentencepiece_model, args.sentencepiece_vocab_size)
    bpe = build_bpe(args.bpe, args.wordpiece_vocab, args.sentencepiece_model)
    return encode_file(bpe, args.input, args.output, max_tokens=args.max_tokens, keep_head=args.keep_head)


def cli_main() -> None:
    run_main(main)


if __name__ == "__main__":
    cli_main()
