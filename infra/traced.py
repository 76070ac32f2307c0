"""Small tensor programs called again and again with the same shapes, run through a trace.

At the batch sizes of a single environment (one user, one item) a model's cost is almost
all per-operation Python overhead: a hundred small tensor operations cost ~1 ms on one CPU
thread, the arithmetic a few microseconds. A TorchScript trace of the same function runs the
same operations without the Python around them, in about half the time, with bit-for-bit the
same results (``tests/test_traced.py``).

A trace is specialised to its inputs' shapes, so :class:`TracedByShape` makes one per input
signature (shapes, dtypes, devices), and only for a signature seen ``warmup`` times: a hot
loop's shapes repeat, an evaluation's block sizes mostly do not. It is used only without
autograd (the simulation paths); with gradients enabled, or when tracing fails or is not
available (``torch.jit`` is deprecated upstream), it calls the module itself.

The traced module must not branch on tensor *values* (only on shapes and configuration):
the trace records the branch taken by the call it was made from.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["TracedByShape"]

Signature = tuple[tuple[tuple[int, ...], torch.dtype, torch.device], ...]


class TracedByShape:
    """Call ``module(*tensors)``, through a trace once the same input signature was seen ``warmup`` times.

    :param module: a module whose ``forward`` takes tensors only and branches on shapes only.
    :param warmup: eager calls of a signature before it is traced.
    :param max_traces: signatures traced at most; the others stay eager.
    """

    def __init__(self, module: nn.Module, warmup: int = 2, max_traces: int = 8):
        self.module, self.warmup, self.max_traces = module, warmup, max_traces
        self._traces: dict[Signature, Any] = {}
        self._seen: dict[Signature, int] = {}

    def __call__(self, *args: Tensor) -> Any:
        if torch.is_grad_enabled():
            return self.module(*args)
        key = tuple((tuple(a.shape), a.dtype, a.device) for a in args)
        trace = self._traces.get(key)
        if trace is not None:
            return trace(*args)
        seen = self._seen[key] = self._seen.get(key, 0) + 1
        if seen > self.warmup and len(self._traces) < self.max_traces:
            trace = self._traces[key] = self._trace(args)
            return trace(*args)
        return self.module(*args)

    @property
    def n_traces(self) -> int:
        """How many signatures run traced."""
        return sum(t is not self.module for t in self._traces.values())

    def _trace(self, args: tuple[Tensor, ...]) -> Any:
        """A trace for ``args``' signature, or the module itself when tracing fails (then never retried)."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TracerWarnings (shape-derived ints, meant) and the deprecation notice
                return torch.jit.trace(self.module, args, check_trace=False)
        except Exception:  # noqa: BLE001 — any failure to trace means: run eagerly, as before
            return self.module
