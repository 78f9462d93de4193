"""Raw-text prediction with a trained student (the library side of distill-predict)."""

import json
import logging
import os
import time
from typing import Optional, Sequence

from ..preprocess.examples import read_examples
from ..fileio import atomic_output, check_input_file, check_output_path

logger = logging.getLogger(__name__)


def predict_file(hub, input_path: str, output_path: Optional[str], fmt: str = "text",
                 text_columns: Sequence[int] = (0,), label_column: Optional[int] = None,
                 header: bool = False, output_format: str = "tsv", batch_size: int = 1024) -> dict:
    """Predict every example of ``input_path``; write labels and probabilities.

    Returns ``{"examples", "seconds", "sentences_per_second"}``, the hub's
    ``"device"``, plus ``"accuracy"`` when labels are given (unknown labels
    are refused), and ``"f1"`` of the second class (label-dictionary order)
    for two classes.  A directory as input or output is refused before any work.
    """
    check_input_file(input_path)
    if output_path:
        check_output_path(output_path)
    texts, labels = read_examples(input_path, fmt, text_columns, label_column, header)
    if labels is not None:
        unknown = [(n, lab) for n, lab in enumerate(labels, 2 if header else 1) if lab not in hub.classes]
        if unknown:
            n, lab = unknown[0]
            raise ValueError(f"{input_path}: line {n} has label {lab!r}, not one of {hub.classes}")
    start = time.perf_counter()
    probs = hub.predict_proba(texts, batch_size=batch_size)
    seconds = time.perf_counter() - start
    preds = [hub.classes[i] for i in probs.argmax(axis=-1)] if len(texts) else []
    if output_path:
        with atomic_output(output_path, "w", encoding="utf-8", newline="\n") as f:
            write_predictions(f, preds, probs, hub.classes, output_format)
    result = {"examples": len(texts), "seconds": round(seconds, 4),
              "sentences_per_second": round(len(texts) / seconds, 1) if seconds > 0 else None}
    if getattr(hub, "device", None) is not None:  # the speed is this device's
        result["device"] = str(hub.device)
    if labels is not None and labels:
        result["accuracy"] = round(100.0 * sum(p == g for p, g in zip(preds, labels)) / len(labels), 2)
        if len(hub.classes) == 2:
            result["f1"] = round(binary_f1(preds, labels, hub.classes[1]), 2)
    return result


def binary_f1(preds: Sequence[str], labels: Sequence[str], positive: str) -> float:
    """F1 (in %) of the positive class, GLUE's second metric for MRPC and QQP."""
    tp = sum(p == positive and g == positive for p, g in zip(preds, labels))
    predicted, actual = sum(p == positive for p in preds), sum(g == positive for g in labels)
    return 200.0 * tp / (predicted + actual) if predicted + actual else 0.0


def binary_mcc(preds: Sequence[str], labels: Sequence[str], positive: str) -> float:
    """Matthews correlation x 100 with ``positive`` as the positive class (GLUE's CoLA metric)."""
    from ..metrics import mcc_from_counts

    pairs = [(p == positive, g == positive) for p, g in zip(preds, labels)]
    return mcc_from_counts(*(sum(1 for x in pairs if x == k) for k in ((True, True), (True, False),
                                                                       (False, True), (False, False))))


def write_predictions(f, preds, probs, classes, output_format: str) -> None:
    if output_format == "tsv":
        f.write("\t".join(["label"] + [f"p_{c}" for c in classes]) + "\n")
        for label, row in zip(preds, probs):
            f.write("\t".join([label] + [f"{p:.6f}" for p in row]) + "\n")
    elif output_format == "jsonl":
        for label, row in zip(preds, probs):
            f.write(json.dumps({"label": label, "probs": dict(zip(classes, map(float, row)))}) + "\n")
    else:
        raise ValueError(f"unknown output format {output_format!r}: tsv or jsonl")


def guess_format(path: str) -> str:
    return "tsv" if os.path.splitext(path)[1].lower() == ".tsv" else "text"
