"""Cutting a sequence to a window: the head alone, or the head and the tail.

Long documents (IMDB reviews average about 300 WordPieces) do not fit a
transformer's window.  Keeping the first ``keep_head`` tokens and the last
``limit - keep_head`` (Sun et al. 2019, "How to fine-tune BERT for text
classification": head 128 + tail 382 beat the head alone on IMDB) keeps the
opening and the verdict.  One function serves the BPE files the teacher is
fine-tuned on (``distill-bpe-encode --max-tokens``) and the ids the
``Teacher`` scores, so both cut the same tokens.
"""

from typing import Optional, Sequence


def check_window(limit: Optional[int], keep_head: Optional[int], what: str = "--max-tokens") -> None:
    if limit is None:
        if keep_head is not None:
            raise ValueError(f"--keep-head needs {what}")
        return
    if limit < 1:
        raise ValueError(f"{what} must be positive, got {limit}")
    if keep_head is not None and not 0 <= keep_head <= limit:
        raise ValueError(f"--keep-head must be between 0 and {what} ({limit}), got {keep_head}")


def head_tail(seq: Sequence, limit: Optional[int], keep_head: Optional[int] = None):
    """``seq`` itself when it fits in ``limit`` items; otherwise its first ``keep_head`` items and
    its last ``limit - keep_head`` (``keep_head`` None: the first ``limit``).  Lists and strings
    concatenate with ``+``; tensors through ``torch.cat``."""
    if limit is None or len(seq) <= limit:
        return seq
    head = limit if keep_head is None else keep_head
    first, last = seq[:head], seq[len(seq) - (limit - head):]
    if isinstance(seq, (list, tuple, str)):
        return first + last
    import torch

    return torch.cat([first, last])
