"""Examples of a text or TSV file: the reader shared by prediction and teacher logits."""

from typing import List, Optional, Sequence, Tuple

from .text_io import DecodeReport, iter_lines, lines_before, warn_bad_utf8


def read_examples(path: str, fmt: str = "text", text_columns: Sequence[int] = (0,),
                  label_column: Optional[int] = None, header: bool = False,
                  start: int = 0, end: Optional[int] = None,
                  warn: bool = True) -> Tuple[list, Optional[List[str]]]:
    """Texts (strings, or tuples for pairs) and optional labels of a text or TSV file.

    ``text`` format: one example per line, every line kept (empty ones too).
    ``tsv`` format: tab-separated columns picked by 0-based index; a row with
    too few columns is refused with its line number.  ``start``/``end`` read
    a line-aligned byte range (a shard); ``header`` skips its first line.
    Line numbers in messages are the file's.  Invalid UTF-8 is replaced and
    its lines are logged, unless ``warn`` is off (a caller that reads the
    same lines again and reports them there).
    """
    if fmt not in ("text", "tsv"):
        raise ValueError(f"unknown input format {fmt!r}: text or tsv")
    if fmt == "text" and (label_column is not None or len(text_columns) != 1):
        raise ValueError("--label-column and pairs need --input-format tsv")
    report = DecodeReport()
    texts, labels = [], [] if label_column is not None else None
    needed = max([*text_columns, label_column if label_column is not None else 0]) + 1
    for i, line in enumerate(iter_lines(path, start, end, report)):
        if header and i == 0:
            continue
        if fmt == "text":
            texts.append(line)
            continue
        cols = line.split("\t")
        if len(cols) < needed:
            raise ValueError(f"{path}: line {lines_before(path, start) + i + 1} has {len(cols)} "
                             f"tab-separated columns, column {needed - 1} (0-based) is needed")
        side = [cols[c] for c in text_columns]
        texts.append(side[0] if len(side) == 1 else tuple(side))
        if labels is not None:
            labels.append(cols[label_column].strip())
    if warn and report.bad_lines:
        base = lines_before(path, start)
        warn_bad_utf8(path, [base + n + 1 for n in report.bad_lines])
    return texts, labels
