"""Per-user starting states, computed once: every episode of a user starts from the same log.

An episode of user ``u`` starts from ``u``'s logged history (up to the configured split), so
its simulator state, its encoder state and its retrieved candidates are pure functions of
``u``. :class:`StartCache` computes them on a user's first episode (one batched call for all
the users first seen in a reset) and gathers them afterwards: a reset costs a few row
gathers instead of a history lookup over the log, a simulator ``initial_state`` and an
encoder pass.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from seqrec.simulators.dynamics import SimState

Start = tuple[SimState, Tensor, Tensor]
"""A batch of starts: the simulator state, the encoder state (B, d), the candidates (B, K)."""

MAX_CACHE_BYTES = 512 * 2**20
"""Beyond this (n_users × bytes per start) the starts are computed at every reset instead."""
PREFILL_USERS = 20_000
"""Logs with at most this many users get every start computed up front (a fraction of a second)."""
PREFILL_CHUNK = 256
"""Users per batched call of the prefill (bounds its peak memory)."""


class StartCache:
    """Starts of ``n_users`` users, filled on first use (see the module docstring).

    :param compute: users ``(n,)`` int64 (distinct) -> their :data:`Start`, all on one device.
    :param n_users: number of users.
    :param max_bytes: memory budget; a larger cache is not kept (every call computes).

    Shapes: ``get(users (B,)) -> (SimState of B rows, (B, d), (B, K))``.
    """

    def __init__(self, compute: Callable[[np.ndarray], Start], n_users: int, max_bytes: int = MAX_CACHE_BYTES):
        self.compute, self.n_users, self.max_bytes = compute, n_users, max_bytes
        self.filled = np.zeros(n_users, bool)
        self.tables: list[Tensor] | None = None  # the SimState fields, then the encoder state and candidates
        self.enabled = True

    def prefill(self, chunk: int = PREFILL_CHUNK) -> None:
        """Compute every user's start now, ``chunk`` users per batched call."""
        for lo in range(0, self.n_users, chunk):
            if not self.enabled:
                return
            users = np.arange(lo, min(lo + chunk, self.n_users), dtype=np.int64)
            self._store(users, self.compute(users))

    def get(self, users: np.ndarray) -> Start:
        """The starts of ``users`` (int64, repeats allowed), computing the users not seen yet."""
        if not self.enabled:
            return self.compute(users)
        missing = np.unique(users[~self.filled[users]])
        if len(missing):
            self._store(missing, self.compute(missing))
            if not self.enabled:
                return self.compute(users)
        idx = torch.from_numpy(users).to(self.tables[0].device)
        rows = [t.index_select(0, idx) for t in self.tables]
        n = len(fields(SimState))
        return SimState(*rows[:n]), rows[n], rows[n + 1]

    def _store(self, users: np.ndarray, start: Start) -> None:
        state, emb, cand = start
        parts = [getattr(state, f.name) for f in fields(SimState)] + [emb, cand]
        if self.tables is None:
            row_bytes = sum(p[0].numel() * p.element_size() for p in parts)
            if self.n_users * row_bytes > self.max_bytes:
                self.enabled = False
                return
            self.tables = [torch.empty((self.n_users, *p.shape[1:]), dtype=p.dtype, device=p.device) for p in parts]
        idx = torch.from_numpy(users).to(self.tables[0].device)
        for table, part in zip(self.tables, parts):
            table.index_copy_(0, idx, part)
        self.filled[users] = True
