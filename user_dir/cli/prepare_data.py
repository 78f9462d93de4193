"""distill-prepare-data: a user's labelled train/dev(/test) files as the pipeline's files."""

import argparse

from . import run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="distill-prepare-data",
        description="Check a labelled dataset (TSV, or text files with labels files) and write, into "
        "OUTPUT_DIR, SPLIT.txt / SPLIT.label / SPLIT.tsv per split, unlabelled.txt, label.dict.txt (the "
        "classes in column order, for fairseq-preprocess --srcdict) and data.json (classes and counts, "
        "written last). Bad rows are refused with the file and line.",
    )
    for split, need in (("train", True), ("dev", True), ("test", False)):
        p.add_argument(f"--{split}", required=need, metavar="FILE",
                       help=f"{split} examples: TSV, or one text per line with --input-format text"
                       + ("" if need else " (optional: the final evaluation, never used to choose)"))
        p.add_argument(f"--{split}-labels", metavar="FILE",
                       help=f"--input-format text: the labels of --{split}, one per line")
    p.add_argument("--unlabelled", nargs="+", default=[], metavar="FILE",
                   help="unlabelled text, one per line: more transfer data for the teacher to label")
    p.add_argument("--input-format", choices=["tsv", "text"], default="tsv", help="default: tsv")
    p.add_argument("--header", action="store_true", help="TSV: skip each file's first line")
    p.add_argument("--text-column", type=int, default=0, metavar="N", help="TSV: 0-based text column (default: 0)")
    p.add_argument("--label-column", type=int, default=1, metavar="N", help="TSV: 0-based label column (default: 1)")
    p.add_argument("--classes", metavar="A,B,...",
                   help="the class order (the logits' columns); default: the training labels sorted, "
                        "numerically when they are all integers")
    p.add_argument("--output-dir", metavar="DIR", help="where the files go")
    p.add_argument("--check", action="store_true",
                   help="check the data and print what data.json would hold; write nothing")
    return p


def main(argv=None) -> dict:
    import json

    from ..preprocess.labelled_data import check_data, prepare_data

    parser = get_parser()
    args = parser.parse_args(argv)
    if args.check == bool(args.output_dir):
        parser.error("give --output-dir, or --check to write nothing")
    labels = {s: getattr(args, f"{s}_labels") for s in ("train", "dev", "test") if getattr(args, f"{s}_labels")}
    data = (args.train, args.dev, args.test, args.unlabelled, args.input_format, args.text_column,
            args.label_column, args.header, labels, args.classes.split(",") if args.classes else None)
    if args.check:
        summary = check_data(*data)[0]
        print(json.dumps(summary, ensure_ascii=False))
        return summary
    return prepare_data(args.output_dir, *data)


def cli_main() -> None:
    run_main(main)


if __name__ == "__main__":
    cli_main()
