"""Device names the tools accept (--device auto/cpu/cuda/cuda:N), resolved before any model loads."""

import re
from typing import Optional

import torch

_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_device(spec: str) -> str:
    """``spec`` if it is a device the tools accept (auto, cpu, cuda, cuda:N), else a ValueError."""
    if not isinstance(spec, str) or not _DEVICE.fullmatch(spec):
        raise ValueError(f"--device {spec}: use auto, cpu, cuda or cuda:N")
    return spec


def resolve_device(spec: Optional[str] = "auto") -> str:
    """The device ``spec`` names on this machine (``auto``/None: CUDA when available); refuses a
    CUDA device that is not there, before any model is loaded."""
    spec = check_device(spec or "auto")
    if spec == "auto":
        if not torch.cuda.is_available():
            return "cpu"
        spec = "cuda"
    if spec == "cpu":
        return "cpu"
    if not torch.cuda.is_available():
        raise ValueError(f"--device {spec}: no CUDA device on this machine (torch {torch.__version__})")
    # current_device() would set CUDA up in a process that may only start jobs
    current = torch.cuda.current_device() if torch.cuda.is_initialized() else 0
    index = int(spec.split(":")[1]) if ":" in spec else current
    if index >= torch.cuda.device_count():
        raise ValueError(f"--device {spec}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return f"cuda:{index}"
