"""Measuring raw text to label: shared by demo/report.py and the benches.

Speeds are sentences per second of a whole ``predict`` call (featurization,
model, labels back on the host), so a CUDA model is timed with its
transfers; every timed row records its device, since a speed-up between
devices says little about the models.
"""

import os
import time
from typing import Callable, Iterable, Sequence, Tuple

import numpy as np
import torch


def timed(fn: Callable, texts: Sequence, min_seconds: float = 2.0) -> Tuple[object, float]:
    """``fn(texts)`` and its sentences per second, repeated for at least ``min_seconds``."""
    fn(texts[:32])  # warm-up
    runs, start = 0, time.perf_counter()
    while True:
        out = fn(texts)  # labels on the host: a CUDA model has finished its work
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return out, runs * len(texts) / elapsed


def accuracy(preds: Sequence[str], labels: Sequence[str]) -> float:
    """Percent of predictions equal to the gold labels, rounded to 2 places."""
    return round(100.0 * float(np.mean([p == g for p, g in zip(preds, labels)])), 2)


def machine(devices: Iterable = ()) -> dict:
    """CPU count, torch threads and the names of the CUDA devices among ``devices``."""
    info = {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    gpus = sorted({str(d) for d in devices if str(d).startswith("cuda")})
    if gpus:
        info["gpus"] = {d: torch.cuda.get_device_name(torch.device(d)) for d in gpus}
    return info


def parameter_counts(model) -> dict:
    """All parameters, and (for a transformer) those outside the embedding: word and position
    embeddings and the masked-LM head, which a classifier never runs, left out."""
    counts = {"parameters": sum(p.numel() for p in model.parameters())}
    enc = getattr(getattr(model, "encoder", None), "sentence_encoder", None)
    if enc is not None:
        skip = {id(p) for m in (enc.embed_tokens, enc.embed_positions, getattr(model.encoder, "lm_head", None))
                if m is not None for p in m.parameters()}
        counts["parameters_without_embedding"] = sum(p.numel() for p in model.parameters() if id(p) not in skip)
    return counts
