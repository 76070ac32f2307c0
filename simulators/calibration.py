"""Held-out calibration of the click model: which events train, calibrate and evaluate, and the calibration map.

:func:`calibration_rows` splits a log's events into training rows, a calibration set (which
also early-stops the fit, :mod:`seqrec.simulators.response_fit`) and, for logs with real
negatives, the evaluation set of the fidelity report (:mod:`seqrec.simulators.fidelity`).
:func:`held_out_pairs` turns a split into labelled (user, history, item) pairs, under the
``impressions`` or the ``sampled`` protocol. :class:`Calibration` is the monotone map from
the response model's raw logit to P(click), fitted on such pairs.

Shapes: ``users (n,)``, ``history (n, L)`` (-1 = pad), ``items (n,)``, ``labels (n,)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from seqrec.data.sequences import SPLIT_NAMES, SequenceData
from seqrec.simulators.config import SimulatorConfig
from seqrec.simulators.examples import ClickLog, UntouchedSampler

__all__ = ["Calibration", "HeldOut", "calibration_rows", "held_out_pairs"]


@dataclass
class Calibration:
    """Monotone map from raw logit to calibrated logit, fitted on held-out data.

    ``temperature``: ``a * z + b`` with ``a > 0``. ``isotonic``: piecewise-linear through
    ``(x, y)`` knots (y are probabilities, clipped to [1e-4, 1 - 1e-4]). ``shift`` is added
    to the calibrated logit afterwards: it sets the base click rate where the log cannot
    identify it (:meth:`with_base_rate`); 0 elsewhere.
    """

    kind: str = "temperature"
    a: float = 1.0
    b: float = 0.0
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    shift: float = 0.0

    def probability(self, z: Tensor) -> Tensor:
        """Calibrated P(click) for raw logits ``z`` (any shape)."""
        p = self._calibrated(z)
        return p if self.shift == 0.0 else torch.sigmoid(torch.logit(p, eps=1e-7) + self.shift)

    def with_base_rate(self, z: np.ndarray, rate: float) -> "Calibration":
        """A copy whose mean P(click) over raw logits ``z (n,)`` is ``rate`` (the shift by bisection).

        Used on logs without impressions, whose calibrated P(click) only means "the real next
        item among ``eval_negatives`` random ones": ``z`` are scores of random never-touched
        items at logged states, and ``rate`` is their stated click probability.
        """
        if not 0.0 < rate < 1.0:
            raise ValueError(f"base click rate must be in (0, 1), not {rate}")
        base = torch.logit(self._calibrated(torch.as_tensor(z, dtype=torch.float64)), eps=1e-7)
        lo, hi = -30.0, 30.0
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if float(torch.sigmoid(base + mid).mean()) < rate else (lo, mid)
        return replace(self, shift=(lo + hi) / 2)

    def _calibrated(self, z: Tensor) -> Tensor:
        if self.kind == "temperature":
            return torch.sigmoid(self.a * z + self.b)
        x = torch.tensor(self.x, dtype=z.dtype, device=z.device)
        y = torch.tensor(self.y, dtype=z.dtype, device=z.device)
        zc = z.clamp(x[0], x[-1])
        j = torch.searchsorted(x, zc.contiguous(), right=True).clamp(1, len(self.x) - 1)
        x0, x1, y0, y1 = x[j - 1], x[j], y[j - 1], y[j]
        t = torch.where(x1 > x0, (zc - x0) / (x1 - x0).clamp_min(1e-12), torch.zeros_like(zc))
        return y0 + t * (y1 - y0)

    @classmethod
    def fit(cls, z: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None, kind: str = "temperature") -> "Calibration":
        """Fit on raw logits ``z (n,)`` and 0/1 ``labels (n,)``."""
        z = np.asarray(z, np.float64)
        labels = np.asarray(labels, np.float64)
        w = np.ones_like(z) if weights is None else np.asarray(weights, np.float64)
        if kind == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            iso = IsotonicRegression(y_min=1e-4, y_max=1 - 1e-4, out_of_bounds="clip").fit(z, labels, sample_weight=w)
            return cls(kind="isotonic", x=[float(v) for v in iso.X_thresholds_], y=[float(v) for v in iso.y_thresholds_])
        # Platt / temperature-with-bias: Newton on (log a, b) would be overkill; 2-D LBFGS
        zt, yt, wt = (torch.tensor(v) for v in (z, labels, w))
        params = torch.tensor([0.0, 0.0], dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([params], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

        def closure() -> Tensor:
            opt.zero_grad()
            loss = (F.binary_cross_entropy_with_logits(params[0].exp() * zt + params[1], yt, reduction="none") * wt).sum() / wt.sum()
            loss.backward()
            return loss

        opt.step(closure)
        a, b = float(params[0].detach().exp()), float(params[1].detach())
        if not (math.isfinite(a) and math.isfinite(b)):
            a, b = 1.0, 0.0
        return cls(kind="temperature", a=a, b=b)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "a": self.a, "b": self.b, "x": list(self.x), "y": list(self.y), "shift": self.shift}


@dataclass
class HeldOut:
    """Scored held-out pairs: ``users (n,)``, ``history (n, L)``, ``items (n,)``, ``labels (n,)``;
    ``behaviour (n,)`` is the logged behaviour code of each pair's event (-1: a sampled negative)."""

    users: np.ndarray
    history: np.ndarray
    items: np.ndarray
    labels: np.ndarray
    protocol: str
    behaviour: np.ndarray | None = None


def held_out_pairs(clicks: ClickLog, split: str | np.ndarray, cfg: SimulatorConfig, rng: np.random.Generator,
                   sampler: UntouchedSampler, protocol: str | None = None) -> HeldOut:
    """Evaluation pairs of a split (a name, or explicit flat event positions).

    ``impressions`` (logs with real negatives): every event of the split with its logged
    label. ``sampled``: each positive event of the split (with >= 1 earlier event) against
    ``cfg.eval_negatives`` items the user never touched anywhere in the log.
    """
    seq = clicks.seq
    protocol = protocol or ("impressions" if clicks.has_real_negatives else "sampled")
    L = cfg.max_history
    if protocol == "impressions":
        pos = np.flatnonzero(seq.split == SPLIT_NAMES[split]) if isinstance(split, str) else np.asarray(split, np.int64)
        hist, _ = clicks.histories(pos, L)
        return HeldOut(seq.users[pos], hist, seq.items[pos], clicks.positive[pos].astype(np.float32), protocol,
                       seq.behaviours[pos].astype(np.int64))
    pos = seq.positions(split) if isinstance(split, str) else np.asarray(split, np.int64)
    pos = pos[clicks.positive[pos]]
    hist, _ = clicks.histories(pos, L)
    users = seq.users[pos]
    k = cfg.eval_negatives
    neg = sampler.sample(users, k, rng)
    items = np.concatenate([seq.items[pos][:, None], neg], axis=1).reshape(-1)
    labels = np.zeros((len(pos), k + 1), np.float32)
    labels[:, 0] = 1
    behaviour = np.full((len(pos), k + 1), -1, np.int64)
    behaviour[:, 0] = seq.behaviours[pos]
    return HeldOut(np.repeat(users, k + 1), np.repeat(hist, k + 1, axis=0), items, labels.reshape(-1), protocol, behaviour.reshape(-1))


def calibration_rows(seq: SequenceData, cfg: SimulatorConfig, real_negatives: bool = True
                     ) -> tuple[np.ndarray, str | np.ndarray, np.ndarray | None]:
    """Which events train, which calibrate (and early-stop), which evaluate.

    Logs with real negatives: a random ``cfg.holdout_fraction`` of the train-split events is
    held out (seeded by ``cfg.seed``); half of it calibrates, half is the evaluation set of
    the fidelity report. Each user's last events are selected by the outcome (users leave
    after misses), so the validation and test splits are not representative impressions.
    Other logs: train split / validation split / (test split, used by the report).

    :return: ``(train_rows, calibration split name or positions, evaluation positions or None)``.
    """
    rows = np.flatnonzero(seq.split == SPLIT_NAMES["train"])
    if not real_negatives:
        return rows, "valid", None
    rng = np.random.default_rng([cfg.seed, 97])
    held = rng.choice(rows, size=max(2, int(round(cfg.holdout_fraction * len(rows)))), replace=False)
    half = len(held) // 2
    return np.setdiff1d(rows, held), np.sort(held[:half]), np.sort(held[half:])
