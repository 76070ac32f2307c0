"""Which torch device a job runs on: ``auto`` picks CUDA when there is one, else the CPU.

The CPU is the tested default everywhere; ``--device cuda`` (or ``auto`` on a GPU machine)
moves the model and each batch to the GPU, while data, sampling and metrics stay on the
CPU, so a run's results do not depend on where its batches were computed beyond rounding.

>>> resolve_device("cpu")
device(type='cpu')
"""

from __future__ import annotations

import torch

from seqrec.infra.errors import SeqrecError

__all__ = ["DEVICE_CHOICES", "check_device_name", "resolve_device"]

DEVICE_CHOICES = "auto | cpu | cuda | cuda:N"


def check_device_name(name: str) -> str:
    """``name`` if it is one of :data:`DEVICE_CHOICES`; else a one-line error (no CUDA needed)."""
    if name in ("auto", "cpu", "cuda") or (name.startswith("cuda:") and name[5:].isdigit()):
        return name
    raise SeqrecError(f"device must be {DEVICE_CHOICES}, not {name!r}")


def resolve_device(name: str) -> torch.device:
    """The torch device ``name`` means here; a one-line error when it asks for CUDA and there is none."""
    check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SeqrecError(f"device {name!r} asked for, but torch sees no CUDA GPU here (torch {torch.__version__}); use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SeqrecError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device
