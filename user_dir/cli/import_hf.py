"""distill-import-hf: a Hugging Face BERT or RoBERTa directory as a fairseq checkpoint."""

import argparse
import json

from . import run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="distill-import-hf",
        description="Convert a local Hugging Face BERT or RoBERTa directory (config.json, model.safetensors "
        "or pytorch_model.bin, vocab.txt or vocab.json) into OUTPUT/model.pt (fairseq model hf_bert, with the "
        "masked-LM head when the checkpoint has one) with its dict.txt, tokenizer files for --bpe wordpiece, "
        "config.json and model-args.txt (the fairseq-train flags of the architecture). The fairseq encoder "
        "computes the same hidden states. Every file appears by rename, model.pt last: its presence means "
        "a finished import.",
    )
    p.add_argument("--hf-dir", required=True, metavar="DIR", help="Hugging Face model directory")
    p.add_argument("--output", required=True, metavar="DIR", help="directory to write")
    return p


def main(argv=None) -> dict:
    from ..preprocess.hf_import import import_hf

    args = get_parser().parse_args(argv)
    summary = import_hf(args.hf_dir, args.output)
    print(json.dumps(summary))
    return summary


def cli_main() -> None:
    run_main(main)


if __name__ == "__main__":
    cli_main()
