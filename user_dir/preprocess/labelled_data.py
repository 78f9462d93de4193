"""A user's labelled data as the files the distillation pipeline reads.

``prepare_data`` takes train / dev (/ test) examples as TSV (text and label
columns, a header or not) or as a text file with a labels file beside it,
plus optional unlabelled text files, checks them, and writes one directory:

* ``SPLIT.txt`` (one text per line) and ``SPLIT.label`` (its label), and
  ``SPLIT.tsv`` (``sentence<TAB>label`` with that header line) for the tools
  that read TSV (``distill-predict``, ``demo/report.py``, the baselines);
* ``unlabelled.txt``: every unlabelled file, one text per line, in order;
* ``label.dict.txt``: the classes as a fairseq label dictionary, in column
  order (``fairseq-preprocess --srcdict``; see data-bin-templates/);
* ``data.json``: classes, rows and per-class counts of every split, written
  last: a rerun trusts the directory once it is there.

Texts are read as every tool reads them (``text_io``: BOM dropped, invalid
UTF-8 read as U+FFFD and reported, HTML line breaks as spaces); a tab inside
a text becomes a space (tokenizers see whitespace either way), so the TSVs
keep two columns.  Refused with the file and line: an empty text, a missing
or empty label, a label with whitespace or named like a fairseq special
symbol, a dev/test label that train does not have (or not in ``classes``),
a labels file whose line count differs from its texts', fewer than two
classes.  The class order is ``classes`` when given, else the labels sorted
(as numbers when they all are integers, so ``0, 1, ..., 10``).
"""

import json
import logging
import os
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

from ..fileio import atomic_output, check_input_file
from .text_io import DecodeReport, format_line_list, iter_lines, warn_bad_utf8

logger = logging.getLogger(__name__)

DATA_FORMAT = "distill-labelled-data/1"
SPLITS = ("train", "dev", "test")
# fairseq's dictionary symbols: a class with one of these names would clash in label/dict.txt
_SPECIAL = frozenset(["<s>", "<pad>", "</s>", "<unk>"])


def _refuse(path: str, what: str, lines: Sequence[int], hint: str = "") -> None:
    where = f"line {lines[0]}" if len(lines) == 1 else f"lines {format_line_list(lines)}"
    raise ValueError(f"{path}: {where}: {what}" + (f"; {hint}" if hint else ""))


def _read(path: str) -> List[str]:
    report = DecodeReport()
    lines = list(iter_lines(path, report=report))
    if report.bad_lines:
        warn_bad_utf8(path, [n + 1 for n in report.bad_lines])
    return lines


def read_labelled(path: str, fmt: str = "tsv", text_column: int = 0, label_column: int = 1,
                  header: bool = False, labels_path: Optional[str] = None) -> Tuple[List[str], List[str], List[int]]:
    """Texts, labels and the 1-based line of each example (in ``path``) of one split."""
    check_input_file(path)
    lines = _read(path)
    first = 1 if header else 0
    numbers = list(range(first + 1, len(lines) + 1))
    if fmt == "text":
        if header:
            raise ValueError(f"{path}: --header is for TSV files; a text file has one example per line")
        if labels_path is None:
            raise ValueError(f"{path}: a text file needs its labels file (one label per line)")
        check_input_file(labels_path, "labels file")
        texts = lines[first:]
        labels = _read(labels_path)
        if len(labels) != len(texts):
            raise ValueError(f"{path} has {len(texts)} examples but {labels_path} has {len(labels)} labels: "
                             f"one label per line, in the same order")
        label_file = labels_path
    elif fmt == "tsv":
        if labels_path is not None:
            raise ValueError(f"{labels_path}: a labels file goes with --input-format text; "
                             f"a TSV carries its labels in --label-column")
        need = max(text_column, label_column) + 1
        texts, labels = [], []
        short = []
        for n, line in zip(numbers, lines[first:]):
            cols = line.split("\t")
            if len(cols) < need:
                short.append(n)
                continue
            texts.append(cols[text_column])
            labels.append(cols[label_column])
        if short:
            _refuse(path, f"fewer than {need} tab-separated columns (text column {text_column}, "
                          f"label column {label_column}, 0-based)", short)
        label_file = path
    else:
        raise ValueError(f"unknown input format {fmt!r}: tsv or text")
    labels = [y.strip() for y in labels]
    label_lines = numbers if fmt == "tsv" else list(range(1, len(labels) + 1))
    empty = [n for n, t in zip(numbers, texts) if not t.strip()]
    if empty:
        _refuse(path, "empty text", empty, "remove the line (its label too) or give it a text")
    for bad, what in (([n for n, y in zip(label_lines, labels) if not y], "no label"),
                      ([n for n, y in zip(label_lines, labels) if len(y.split()) > 1], "a label with whitespace"),
                      ([n for n, y in zip(label_lines, labels) if y in _SPECIAL], "a label named like a fairseq symbol")):
        if bad:
            _refuse(label_file, what, bad, "labels are single tokens (fairseq-preprocess splits on whitespace)")
    return [t.replace("\t", " ") for t in texts], labels, numbers


def class_order(labels: Sequence[str], classes: Optional[Sequence[str]] = None) -> List[str]:
    """``classes`` when given (checked), else the distinct labels sorted (numerically if all integers)."""
    if classes is not None:
        classes = list(classes)
        dup = [c for c, k in Counter(classes).items() if k > 1]
        if dup:
            raise ValueError(f"--classes names {dup[0]!r} twice")
        for c in classes:
            if not c or len(c.split()) > 1 or c in _SPECIAL:
                raise ValueError(f"--classes: {c!r} is not a usable label (a single token, not a fairseq symbol)")
    else:
        distinct = set(labels)
        try:
            classes = sorted(distinct, key=int)
        except ValueError:
            classes = sorted(distinct)
    if len(classes) < 2:
        raise ValueError(f"a classifier needs at least two classes; the training labels have {len(classes)}: "
                         f"{classes}")
    return classes


def _write_lines(path: str, lines: Sequence[str]) -> None:
    with atomic_output(path, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line + "\n")


def check_data(train: str, dev: str, test: Optional[str] = None, unlabelled: Sequence[str] = (),
               fmt: str = "tsv", text_column: int = 0, label_column: int = 1, header: bool = False,
               labels: Optional[Dict[str, str]] = None, classes: Optional[Sequence[str]] = None):
    """Read and check every split: (summary, {split: (texts, labels)}, unlabelled texts).

    ``labels`` maps a split to its labels file (``fmt="text"``).  The summary is what
    ``data.json`` holds."""
    labels = labels or {}
    paths = {"train": train, "dev": dev, "test": test}
    for split in labels:
        if split not in SPLITS or paths.get(split) is None:
            raise ValueError(f"a labels file for {split!r}, which is not given")
    for path in unlabelled:
        check_input_file(path, "unlabelled text file")
    read = {}
    for split in SPLITS:
        if paths[split] is not None:
            read[split] = read_labelled(paths[split], fmt, text_column, label_column, header, labels.get(split))
    if not read["train"][0]:
        raise ValueError(f"{train}: no training example")
    order = class_order(read["train"][1], classes)
    known = set(order)
    for split, (texts, ys, numbers) in read.items():
        if not texts:
            raise ValueError(f"{paths[split]}: no example")
        unknown = [(n, y) for n, y in zip(numbers if fmt == "tsv" else range(1, len(ys) + 1), ys) if y not in known]
        if unknown:
            where = paths[split] if fmt == "tsv" else labels[split]
            source = "--classes" if classes is not None else f"the training labels of {train}"
            _refuse(where, f"label {unknown[0][1]!r} is not a class of {source} ({', '.join(order)})",
                    [n for n, _ in unknown])
    unlabelled_lines: List[str] = []
    unlabelled_rows = []
    for path in unlabelled:
        lines = _read(path)
        empty = [n for n, t in enumerate(lines, 1) if not t.strip()]
        if empty:
            _refuse(path, "empty text", empty, "the teacher would label nothing there; remove the line")
        unlabelled_lines.extend(t.replace("\t", " ") for t in lines)
        unlabelled_rows.append({"file": os.path.abspath(path), "rows": len(lines)})
    summary = {"format": DATA_FORMAT, "classes": order, "splits": {}, "unlabelled": unlabelled_rows}
    for split, (texts, ys, _) in read.items():
        counts = Counter(ys)
        summary["splits"][split] = {"file": os.path.abspath(paths[split]), "rows": len(texts),
                                    "per_class": {c: counts.get(c, 0) for c in order}}
    return summary, {split: (texts, ys) for split, (texts, ys, _) in read.items()}, unlabelled_lines


def prepare_data(output_dir: str, *args, **kwargs) -> dict:
    """Check the user's splits (``check_data``'s arguments) and write the pipeline's files into
    ``output_dir`` (see the module doc).  Returns what ``data.json`` holds."""
    summary, read, unlabelled_lines = check_data(*args, **kwargs)
    order = summary["classes"]
    os.makedirs(output_dir, exist_ok=True)
    for split, (texts, ys) in read.items():
        out = os.path.join(output_dir, split)
        _write_lines(out + ".txt", texts)
        _write_lines(out + ".label", ys)
        _write_lines(out + ".tsv", ["sentence\tlabel"] + [f"{t}\t{y}" for t, y in zip(texts, ys)])
    if summary["unlabelled"]:
        _write_lines(os.path.join(output_dir, "unlabelled.txt"), unlabelled_lines)
    # count 0: fairseq-preprocess --srcdict keeps the order; the count is ignored
    _write_lines(os.path.join(output_dir, "label.dict.txt"), [f"{c} 0" for c in order])
    with atomic_output(os.path.join(output_dir, "data.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, ensure_ascii=False)
        f.write("\n")
    for split, info in summary["splits"].items():
        logger.info("%s: %d examples (%s)", split, info["rows"],
                    ", ".join(f"{c}: {k}" for c, k in info["per_class"].items()))
    if summary["unlabelled"]:
        logger.info("unlabelled: %d texts from %d file(s)", len(unlabelled_lines), len(summary["unlabelled"]))
    missing = [c for c, k in summary["splits"]["train"]["per_class"].items() if k == 0]
    if missing:
        logger.warning("no training example of class(es) %s (named by --classes)", ", ".join(missing))
    return summary
