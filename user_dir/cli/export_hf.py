"""distill-export-hf: a transformer student as a Hugging Face BERT directory."""

import argparse
import json

from . import run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="distill-export-hf",
        description="Write a trained transformer student (glue_distillation with hf_bert or pruned_roberta) "
        "as a Hugging Face BERT directory that AutoModelForSequenceClassification (and AutoModelForMaskedLM "
        "when it has an LM head) loads and that computes the same logits: config.json, vocab.txt, "
        "tokenizer_config.json, model.safetensors (last).",
    )
    p.add_argument("--checkpoint", required=True, help="the student's checkpoint (e.g. ckpt/checkpoint_best.pt)")
    p.add_argument("--data-bin", required=True, help="its data-bin (input0/dict.txt, label/dict.txt)")
    p.add_argument("--output", required=True, metavar="DIR", help="directory to write")
    return p


def main(argv=None) -> dict:
    from ..inference.hf_export import export_hf

    a = get_parser().parse_args(argv)
    summary = export_hf(a.checkpoint, a.data_bin, a.output)
    print(json.dumps(summary))
    return summary


def cli_main() -> None:
    run_main(main)


if __name__ == "__main__":
    cli_main()
