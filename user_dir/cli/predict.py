"""distill-predict: labels and probabilities for raw text with a trained student."""

import argparse
import json
import os

from . import run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="distill-predict",
        description="Classify raw text (one example per line) or TSV with a trained student (DAN "
        "or BiLSTM). Prints a JSON summary (examples, speed and device; accuracy, and F1 of the second class "
        "for two classes, when labels are given).",
    )
    p.add_argument("--checkpoint", required=True, metavar="FILE", help="checkpoint, e.g. checkpoints/checkpoint_best.pt")
    p.add_argument("--data-bin", required=True, metavar="DIR",
                   help="the data-bin the student was trained on (its dictionaries; input0/ngrams.json for a DAN)")
    p.add_argument("--input", required=True, metavar="FILE", help="text or TSV file")
    p.add_argument("--input-format", choices=["text", "tsv"], default=None,
                   help="default: tsv for *.tsv files, text otherwise")
    p.add_argument("--text-column", type=int, nargs="+", default=[0], metavar="N",
                   help="0-based TSV column(s) of the text; two for sentence pairs (default: 0)")
    p.add_argument("--label-column", type=int, default=None, metavar="N",
                   help="0-based TSV column of gold labels: report accuracy")
    p.add_argument("--header", action="store_true", help="skip the first line")
    p.add_argument("--output", default=None, metavar="FILE", help="predictions file (default: none)")
    p.add_argument("--output-format", choices=["tsv", "jsonl"], default="tsv",
                   help="tsv: label and one probability column per class; jsonl: one object per line")
    p.add_argument("--batch-size", type=int, default=1024, metavar="N")
    p.add_argument("--device", default=None, metavar="D",
                   help="cpu (default: speeds comparable with CPU baselines), auto (CUDA when available), "
                        "cuda or cuda:N")
    p.add_argument("--cpu", action="store_true", help="same as --device cpu (the default)")
    p.add_argument("--table-dtype", choices=["float16", "bfloat16"], default=None,
                   help="a DAN's n-gram table in half precision: faster on CPU, outputs within about 1e-4 "
                        "(single-text mean/sum DANs only; default float32)")
    return p


def main(argv=None) -> dict:
    from ..fileio import check_input_file, check_output_path
    from ..inference.devices import resolve_device
    from ..inference.hub_interface import StudentHubInterface
    from ..inference.predict import guess_format, predict_file

    args = get_parser().parse_args(argv)
    if args.cpu and args.device not in (None, "cpu"):
        raise ValueError(f"--cpu contradicts --device {args.device}")
    # everything that can be refused is, before the model loads
    device = resolve_device(args.device or "cpu")
    check_input_file(args.input)
    if args.output:
        check_output_path(args.output)
    check_input_file(args.checkpoint, "checkpoint")
    if not os.path.isdir(args.data_bin):
        raise FileNotFoundError(f"--data-bin directory not found: {args.data_bin}")
    hub = StudentHubInterface.from_pretrained(os.path.dirname(os.path.abspath(args.checkpoint)),
                                              os.path.abspath(args.checkpoint), os.path.abspath(args.data_bin),
                                              device=device, table_dtype=args.table_dtype)
    result = predict_file(hub, args.input, args.output, args.input_format or guess_format(args.input),
                          args.text_column, args.label_column, args.header, args.output_format,
                          args.batch_size)
    print(json.dumps(result))
    return result


def cli_main() -> None:
    run_main(main)


if __name__ == "__main__":
    cli_main()
