"""Teacher logits: a memory-mapped ``.npy`` of shape [N, C] and its class order.

``distill/{split}.npy`` holds raw teacher logits (float32 or float16), row i
for example i.  ``distill/{split}.json`` beside it records
``{"classes": [...]}``, the label of each column, which must equal the order
of ``label/dict.txt``.  Everything that can be wrong with such a file is
refused here, naming the file and the row.
"""

import json
import logging
import os
from typing import List, Optional, Sequence

import numpy as np
import torch
from fairseq.data import FairseqDataset

from .text_io import atomic_output, atomic_path

logger = logging.getLogger(__name__)

ALLOWED_DTYPES = (np.float32, np.float16)
_SCAN_ROWS = 1 << 20


def class_order_path(npy_path: str) -> str:
    return os.path.splitext(npy_path)[0] + ".json"


def save_teacher_targets(npy_path: str, logits, classes: Sequence[str], **meta) -> None:
    """Write logits and their class order atomically (the format this module reads)."""
    logits = np.asarray(logits)
    if logits.dtype not in ALLOWED_DTYPES:
        logits = logits.astype(np.float32)
    if logits.ndim != 2 or logits.shape[1] != len(classes):
        raise ValueError(f"logits of shape {logits.shape} do not match {len(classes)} classes")
    tmp = atomic_path(npy_path)
    try:
        with open(tmp, "wb") as f:
            np.save(f, logits)
        os.replace(tmp, npy_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    with atomic_output(class_order_path(npy_path), "w", encoding="utf-8") as f:
        json.dump({"classes": [str(c) for c in classes], "num_rows": int(logits.shape[0]), **meta}, f,
                  indent=2, ensure_ascii=False)
        f.write("\n")


def load_teacher_targets(npy_path: str, num_rows: int, num_classes: int,
                         classes: Optional[List[str]] = None, rows_from: str = "the data") -> np.ndarray:
    """Open ``npy_path`` memory-mapped and refuse anything that does not fit.

    ``num_rows`` is the number of examples in ``rows_from``; ``classes`` is the
    expected class order (from ``label/dict.txt``).
    """
    try:
        array = np.load(npy_path, mmap_mode="r")
    except (ValueError, OSError) as e:
        raise ValueError(f"{npy_path}: not a readable .npy file ({e})") from None
    if array.ndim != 2:
        raise ValueError(f"{npy_path}: teacher logits must be 2-D [examples, classes], got shape {array.shape}")
    if array.dtype not in ALLOWED_DTYPES:
        raise ValueError(f"{npy_path}: dtype {array.dtype} not supported; save float32 or float16")
    if array.shape[0] != num_rows:
        raise ValueError(
            f"{npy_path} has {array.shape[0]} rows but {rows_from} has {num_rows} examples: "
            f"teacher logits and data are misaligned"
        )
    if array.shape[1] != num_classes:
        raise ValueError(
            f"{npy_path} has {array.shape[1]} classes per row but --num-classes is {num_classes}"
        )
    for start in range(0, array.shape[0], _SCAN_ROWS):
        block = np.asarray(array[start:start + _SCAN_ROWS])
        finite = np.isfinite(block).all(axis=1)
        if not finite.all():
            row = start + int(np.argmin(finite))
            raise ValueError(
                f"{npy_path}: row {row} (example {row + 1} of {rows_from}) holds "
                f"{block[row - start].tolist()}: NaN or inf teacher logits"
            )
    check_class_order(npy_path, classes)
    return array


def check_class_order(npy_path: str, classes: Optional[List[str]]) -> None:
    path = class_order_path(npy_path)
    if not os.path.exists(path):
        logger.warning("%s not found: cannot check that the columns of %s follow the class "
                       "order %s", path, npy_path, classes)
        return
    with open(path, encoding="utf-8") as f:
        try:
            recorded = json.load(f).get("classes")
        except (json.JSONDecodeError, AttributeError) as e:
            raise ValueError(f"{path}: not a class-order file ({e})") from None
    if classes is not None and [str(c) for c in recorded] != list(classes):
        raise ValueError(
            f"{path} says the columns of {npy_path} are classes {recorded}, but the label "
            f"dictionary orders them {classes}: the teacher's class order differs"
        )


class TeacherTargetDataset(FairseqDataset):
    """Rows of a teacher-logit array as float32 tensors, collated into [B, C]."""

    def __init__(self, array: np.ndarray):
        self.array = array

    def __getitem__(self, index):
        return torch.from_numpy(np.array(self.array[index], dtype=np.float32))

    def __len__(self):
        return len(self.array)

    def collater(self, samples):
        return torch.stack(samples) if samples else torch.empty(0)

    @property
    def supports_prefetch(self):
        return False
