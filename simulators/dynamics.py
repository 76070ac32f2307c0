r"""Simulated-user state and its dynamics: history, satiation memory, misses, and the exit model.

State (:class:`SimState`, B users, all tensors):

==========  ============  =================================================================
field       shape, dtype  meaning
==========  ============  =================================================================
users       (B,) long     user index (contiguous, as in the fitted :class:`SequenceData`)
history     (B, L) long   clicked items, left-padded with -1, most recent last
behaviours  (B, L) long   behaviour index of each history entry (-1 pad)
misses      (B,) long     consecutive steps without a click (0 right after a click)
satiation   (B, L) float  decayed weight of each history entry in the satiation penalty
steps       (B,) long     steps simulated since :meth:`UserSimulator.initial_state`
==========  ============  =================================================================

Satiation: from a logged prefix, entry ``k`` (age ``a_k`` in clicks) weighs
:math:`\gamma^{a_k}`; after a click every weight is multiplied by :math:`\gamma` and the new
item enters with weight 1; after a step without a click every weight is multiplied by
``idle_satiation_decay``. Items similar to the weighted entries lose attractiveness
(:mod:`seqrec.simulators.response`).

Exit model: after each step's outcome the user leaves with
:math:`P(\mathrm{exit}) = \sigma(e_0 + e_1 \cdot \mathrm{misses})`, fitted by maximum
likelihood on the log's sessions (:func:`fit_exit_model`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor

from seqrec.infra.errors import SeqrecError
from seqrec.data.sequences import SequenceData


@dataclass
class SimState:
    """A batch of simulated users (see the module docstring for the fields)."""

    users: Tensor
    history: Tensor
    behaviours: Tensor
    misses: Tensor
    satiation: Tensor
    steps: Tensor

    @property
    def batch_size(self) -> int:
        return int(self.users.shape[0])

    @property
    def device(self) -> torch.device:
        return self.users.device

    def index(self, idx: Tensor | np.ndarray | slice | list[int]) -> "SimState":
        """Rows selected by a boolean mask ``(B,)`` or indices: a new state of those users."""
        if isinstance(idx, np.ndarray):
            idx = torch.from_numpy(idx)
        if isinstance(idx, Tensor):
            idx = idx.to(self.device)
        return SimState(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def replace_rows(self, idx: Tensor | np.ndarray | list[int], other: "SimState") -> "SimState":
        """Overwrite rows ``idx`` (indices ``(n,)`` or a mask ``(B,)``) with the rows of
        ``other`` (batch ``n``), e.g. vector-env autoreset; returns ``self``.

        The tensors are copied before writing, so other holders of the old tensors (an
        earlier :class:`StepResult`) are not changed.
        """
        if isinstance(idx, np.ndarray):
            idx = torch.from_numpy(idx)
        idx = torch.as_tensor(idx, device=self.device)
        if idx.dtype == torch.bool:
            idx = idx.nonzero().flatten()
        if other.batch_size != idx.numel():
            raise SeqrecError(f"replace_rows: {idx.numel()} rows to replace but the other state has {other.batch_size}")
        if other.history.shape[1] != self.history.shape[1]:
            raise SeqrecError(f"replace_rows: history length {other.history.shape[1]} != {self.history.shape[1]}")
        for f in fields(self):
            new = getattr(self, f.name).clone()
            new[idx] = getattr(other, f.name).to(self.device, new.dtype)
            setattr(self, f.name, new)
        return self

    def to(self, device: torch.device | str) -> "SimState":
        return SimState(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def clone(self) -> "SimState":
        return SimState(**{f.name: getattr(self, f.name).clone() for f in fields(self)})

    @staticmethod
    def concat(states: list["SimState"]) -> "SimState":
        """Stack states along the batch dimension."""
        return SimState(**{f.name: torch.cat([getattr(s, f.name) for s in states]) for f in fields(SimState)})


def compact_left(history: Tensor, keep: Tensor, length: int, *extra: Tensor) -> tuple[Tensor, ...]:
    """Drop entries where ``keep`` is False, keep the order, left-pad with -1 to ``length``.

    :param history: ``(B, L0)``; ``keep`` ``(B, L0)`` bool; ``extra`` tensors ``(B, L0)`` follow the same moves.
    :return: ``(history, *extra)``, each ``(B, length)`` (the last ``length`` kept entries).
    """
    B, L0 = history.shape
    # stable sort puts dropped entries first, kept ones last, in their original order
    order = torch.sort(keep.to(torch.int8), dim=1, stable=True).indices
    out = []
    n_keep = keep.sum(1, keepdim=True)
    for t in (history, *extra):
        s = torch.gather(t, 1, order)
        if L0 < length:
            s = torch.cat([torch.full((B, length - L0), -1, dtype=s.dtype, device=s.device), s], dim=1)
        else:
            s = s[:, L0 - length:]
        out.append(s)
    width = out[0].shape[1]
    col = torch.arange(width, device=history.device)[None, :]
    pad = col < (width - n_keep.clamp_max(width))
    return tuple(torch.where(pad, torch.full_like(t, -1), t) for t in out)


def push_click(state: SimState, clicked: Tensor, items: Tensor, behaviours: Tensor, decay: float, idle_decay: float,
               any_click: bool | None = None) -> SimState:
    """Next state after one step: clicked items enter the history, satiation and misses move.

    :param clicked: ``(B,)`` bool; ``items`` / ``behaviours``: ``(B,)`` long (ignored where not clicked).
    :param any_click: ``bool(clicked.any())`` when the caller knows it already.

    The new state shares the history tensors of ``state`` when nobody clicked (states are never
    written in place; :meth:`SimState.replace_rows` copies).
    """
    misses = (state.misses + 1) * ~clicked
    if not (bool(clicked.any()) if any_click is None else any_click):  # nothing enters any history: one multiply instead of three shifted copies
        return SimState(users=state.users, history=state.history, behaviours=state.behaviours, misses=misses,
                        satiation=state.satiation * idle_decay, steps=state.steps + 1)
    c = clicked[:, None]
    hist = torch.where(c, torch.cat([state.history[:, 1:], items[:, None]], dim=1), state.history)
    beh = torch.where(c, torch.cat([state.behaviours[:, 1:], behaviours[:, None]], dim=1), state.behaviours)
    ones = torch.ones_like(state.satiation[:, :1])
    sat = torch.where(c, torch.cat([state.satiation[:, 1:] * decay, ones], dim=1), state.satiation * idle_decay)
    return SimState(users=state.users, history=hist, behaviours=beh, misses=misses, satiation=sat, steps=state.steps + 1)


# ---------------------------------------------------------------------------------------
# Exit model
# ---------------------------------------------------------------------------------------


@dataclass
class ExitModel:
    """P(leave after a step) = sigmoid(intercept + slope * misses).

    :param slope_fitted: False when the log had no non-click events, so ``slope`` is the
        documented default :attr:`SimulatorConfig.default_exit_slope`.
    :param source: where the sessions came from (``session column`` or ``time gaps > N s``).
    """

    intercept: float
    slope: float
    slope_fitted: bool = True
    source: str = ""
    n_steps: int = 0
    n_exits: int = 0

    def probability(self, misses: Tensor) -> Tensor:
        """Exit probability for ``misses`` of any shape (same shape, float)."""
        return torch.sigmoid(self.intercept + self.slope * misses.to(torch.float32))

    def to_dict(self) -> dict:
        return {"intercept": self.intercept, "slope": self.slope, "slope_fitted": self.slope_fitted,
                "source": self.source, "n_steps": self.n_steps, "n_exits": self.n_exits}


def session_ids(seq: SequenceData, gap_s: int) -> tuple[np.ndarray, str]:
    """A session id per event (increasing along the flat arrays) and how it was found."""
    if seq.session is not None:
        new = np.ones(seq.n_events, bool)
        new[1:] = (seq.session[1:] != seq.session[:-1]) | (seq.users[1:] != seq.users[:-1])
        return np.cumsum(new) - 1, "session column"
    new = np.ones(seq.n_events, bool)
    new[1:] = (seq.users[1:] != seq.users[:-1]) | (np.diff(seq.ts) > gap_s)
    return np.cumsum(new) - 1, f"time gaps > {gap_s} s"


def session_steps(seq: SequenceData, positive: np.ndarray, gap_s: int, max_misses: int) -> dict[str, np.ndarray | str]:
    """Per-event session facts of a log, all shape (n_events,).

    ``misses``: consecutive non-click events in the session up to and including this one;
    ``exit``: the event ends its session; ``censored``: a user's last event within ``gap_s`` of
    the log's end (whether the user left or the log ended is unknown, so the exit fit skips
    it). A user's last event earlier than that is an exit: the user left and never came back
    within the log. On a log of anonymous sessions (one session per user) those are the only
    exits there are. ``session``: session id.
    """
    sess, source = session_ids(seq, gap_s)
    n = seq.n_events
    idx = np.arange(n)
    start = np.ones(n, bool)
    start[1:] = sess[1:] != sess[:-1]
    sess_start = np.maximum.accumulate(np.where(start, idx, 0))
    last_pos = np.maximum.accumulate(np.where(positive, idx, -1))
    reset = np.maximum(last_pos, sess_start - 1)
    misses = np.minimum(idx - reset, max_misses)
    exit_ = np.ones(n, bool)
    exit_[:-1] = sess[1:] != sess[:-1]
    censored = np.zeros(n, bool)
    last = seq.user_ptr[1:] - 1
    censored[last] = seq.ts[last] > seq.ts.max(initial=0) - gap_s
    return {"misses": misses, "exit": exit_, "censored": censored, "session": sess, "source": source}


def fit_exit_model(seq: SequenceData, positive: np.ndarray, gap_s: int, max_misses: int, default_slope: float) -> ExitModel:
    """Maximum-likelihood logistic exit model on the log's sessions (Newton's method).

    Without non-click events every step has ``misses = 0``, so only the intercept is
    identified; the slope is then ``default_slope``.
    """
    facts = session_steps(seq, positive, gap_s, max_misses)
    keep = ~facts["censored"]
    m = facts["misses"][keep]
    y = facts["exit"][keep].astype(np.float64)
    if len(m) == 0:
        return ExitModel(intercept=-3.0, slope=default_slope, slope_fitted=False, source="no sessions (default)")
    counts = np.bincount(m, minlength=max_misses + 1).astype(np.float64)
    exits = np.bincount(m, weights=y, minlength=max_misses + 1)
    xs = np.arange(max_misses + 1, dtype=np.float64)
    seen = counts > 0
    if seen.sum() < 2:
        rate = np.clip(exits.sum() / counts.sum(), 1e-4, 1 - 1e-4)
        return ExitModel(intercept=float(math.log(rate / (1 - rate))), slope=float(default_slope), slope_fitted=False,
                         source=str(facts["source"]), n_steps=int(counts.sum()), n_exits=int(exits.sum()))
    xs, counts, exits = xs[seen], counts[seen], exits[seen]
    theta = np.array([math.log(max(exits.sum(), 0.5) / max(counts.sum() - exits.sum(), 0.5)), 0.0])
    X = np.stack([np.ones_like(xs), xs], axis=1)
    for _ in range(100):
        p = 1 / (1 + np.exp(-(X @ theta)))
        grad = X.T @ (exits - counts * p) - 1e-6 * theta
        hess = (X * (counts * p * (1 - p))[:, None]).T @ X + 1e-6 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        theta = theta + step
        if np.abs(step).max() < 1e-10:
            break
    return ExitModel(intercept=float(theta[0]), slope=float(theta[1]), slope_fitted=True,
                     source=str(facts["source"]), n_steps=int(counts.sum()), n_exits=int(exits.sum()))
