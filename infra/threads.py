"""Run a block of torch code on a fixed number of CPU threads.

The models here are small, so one thread is usually fastest, and torch's default (one
per core) oversubscribes a machine that already runs other jobs: on a busy 2-core
machine a batched env step ran 60x slower with 2 threads than with 1
(``benchmarks/README.md``). Every long-running entry point (pretraining, bundle builds,
evaluation, agent training) therefore sets its thread count explicitly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Set ``torch.set_num_threads(n)`` inside the block and restore it after (``None``: leave it)."""
    if n is None:
        yield
        return
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
