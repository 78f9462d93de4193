"""distill-import-hf: a Hugging Face BERT directory as a fairseq checkpoint."""

import argparse
import json

from . import run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="distill-import-hf",
        description="Convert a local Hugging Face BERT directory (config.json, model.safetensors or "
        "pytorch_model.bin, vocab.txt) into OUTPUT/model.pt (fairseq model hf_bert) with its dict.txt, "
        "tokenizer files for --bpe wordpiece, and model-args.txt (the fairseq-train flags of the "
        "architecture). The fairseq encoder computes the same hidden states.",
    )
    p.add_argument("--hf-dir", required=True, metavar="DIR", help="Hugging Face model directory")
    p.add_argument("--output", required=True, metavar="DIR", help="directory to write")
    return p


def main(argv=None) -> dict:
    from ..hf_import import import_hf

    args = get_parser().parse_args(argv)
    summary = import_hf(args.hf_dir, args.output)
    print(json.dumps(summary))
    return summary


def cli_main() -> None:
    run_main(main)


if __name__ == "__main__":
    cli_main()
