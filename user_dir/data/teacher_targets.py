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

from ..fileio import atomic_output, atomic_file

logger = logging.getLogger(__name__)

ALLOWED_DTYPES = (np.float32, np.float16)
_SCAN_ROWS = 1 << 20
# logits of trained classifiers stay within tens; beyond this the loss overflows float32
MAX_ABS_LOGIT = 1e4


def class_order_path(npy_path: str) -> str:
    return os.path.splitext(npy_path)[0] + ".json"


def save_teacher_targets(npy_path: str, logits, classes: Sequence[str], **meta) -> None:
    """Write logits and their class order atomically (the format this module reads)."""
    logits = np.asarray(logits)
    if logits.dtype not in ALLOWED_DTYPES:
        logits = logits.astype(np.float32)
    if logits.ndim != 2 or logits.shape[1] != len(classes):
        raise ValueError(f"logits of shape {logits.shape} do not match {len(classes)} classes")
    # the class order first, the .npy last: a rerun trusts an existing .npy as the finished output
    with atomic_output(class_order_path(npy_path), "w", encoding="utf-8") as f:
        json.dump({"classes": [str(c) for c in classes], "num_rows": int(logits.shape[0]), **meta}, f,
                  indent=2, ensure_ascii=False)
        f.write("\n")
    with atomic_file(npy_path) as tmp:
        np.save(tmp, logits)


def load_teacher_targets(npy_path: str, num_rows: int, num_classes: int,
                         classes: Optional[List[str]] = None, rows_from: str = "the data",
                         require_class_order: bool = True) -> np.ndarray:
    """Open ``npy_path`` memory-mapped and refuse anything that does not fit.

    ``num_rows`` is the number of examples in ``rows_from``; ``classes`` is the
    expected class order (from ``label/dict.txt``).  Without the class-order
    file beside it the array is refused unless ``require_class_order`` is off
    (``--classes-from-label-dict``: the user says the columns follow the label
    dictionary).
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
        block = np.asarray(array[start:start + _SCAN_ROWS], dtype=np.float32)
        # finite but huge logits overflow the loss (softmax of 3e38 / T): no real teacher gives them
        ok = np.isfinite(block).all(axis=1) & (np.abs(block) <= MAX_ABS_LOGIT).all(axis=1)
        if not ok.all():
            row = start + int(np.argmin(ok))
            what = "NaN or inf" if not np.isfinite(block[row - start]).all() else \
                f"absurd (beyond +-{MAX_ABS_LOGIT:g})"
            raise ValueError(
                f"{npy_path}: row {row} (example {row + 1} of {rows_from}) holds "
                f"{block[row - start].tolist()}: {what} teacher logits"
            )
    check_class_order(npy_path, classes, require_class_order)
    return array


def check_class_order(npy_path: str, classes: Optional[List[str]], required: bool = True) -> None:
    path = class_order_path(npy_path)
    if not os.path.exists(path):
        if required:
            raise ValueError(
                f"{path} not found: it records which class each column of {npy_path} is "
                f"(distill-teacher-logits writes it). Write it, or pass --classes-from-label-dict "
                f"if the columns follow label/dict.txt ({classes})"
            )
        logger.warning("%s not found: taking the columns of %s to be %s (--classes-from-label-dict)",
                       path, npy_path, classes)
        return
    with open(path, encoding="utf-8") as f:
        try:
            recorded = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not a class-order file ({e})") from None
    recorded = recorded.get("classes") if isinstance(recorded, dict) else None
    if not isinstance(recorded, list) or not all(isinstance(c, (str, int)) for c in recorded):
        raise ValueError(f'{path}: not a class-order file: it needs {{"classes": [name, ...]}}, '
                         f"one name per column of {npy_path}")
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
