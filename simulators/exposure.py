r"""Debiased fitting: inverse-propensity weights for the response model's loss.

A log holds what the logging policy chose to show. A click model fitted on it learns
P(click | history, item) where the policy showed much, and its calibration matches the
*logged* click rate; scored on randomly exposed items (the question a simulator answers for
a new policy) it is off -- a matrix factorisation fitted on Coat's self-picked ratings
predicted a 27 % like-rate where random exposure gave 18.5 %. Weighting each logged event by
its inverse exposure propensity makes the training loss an estimate of the loss under
uniform random exposure (IPS); ``SimulatorConfig.debias`` picks it.

Weights (shapes: ``propensity (n,)`` -> ``weights (n,)``)
--------------------------------------------------------

.. math::
    w_j = \min\!\left(\frac{\bar p}{p_j},\ w_{max}\right), \qquad
    \bar p = \Big(\frac{1}{n}\sum_{r \in \text{train}} \frac{1}{p_r}\Big)^{-1}

:math:`p_j` is the exposure propensity of event :math:`j`, :math:`\bar p` the harmonic mean
over the training rows (so the unclipped weights average 1 there and the loss keeps its
scale against the priors) and :math:`w_{max}` = ``SimulatorConfig.debias_max_weight`` the
upper clip (weights below 1, over-exposed items, are kept: clipping them up would undo the
correction). When :math:`p_j` is the probability that a policy picking one of :math:`M`
items showed item :math:`j`, :math:`\bar p \approx 1/M` and :math:`w_j` is the importance
ratio of uniform random exposure to the logging policy. ``ips`` uses :math:`w_j` as is in
the mean loss of a batch; ``snips`` divides them by their batch mean
(:math:`\sum_j w_j \ell_j / \sum_j w_j`: lower variance, a small bias).

Propensities
------------
From the log's ``pscore`` column when it has one (``SequenceData.pscore``, in (0, 1]).
Otherwise from :class:`PopularityExposure`, fitted on the training rows: the item marginal
of exposure, :math:`p_i = (n_i + 1) / (N + M)` (:math:`n_i` training events of item
:math:`i` -- impressions on a log that has them, else the logged positives; add-one
smoothing). Why this one: the log identifies which items were exposed and how often, but not
the inputs of the policy that chose them, so any per-context exposure model would be a guess
about that policy; the item marginal is what the log does identify, it is the propensity
the exposure-debiasing literature uses for logs without logged propensities (Yang et al.,
RecSys 2018; Saito et al., WSDM 2020), and it corrects the popularity skew that dominates
real logging policies. It cannot correct exposure that depends on the user (a policy
that shows each user what it predicts they like); the fidelity report says which
propensities were used, and that estimated ones come from the log itself.

Only the logged pair of a row is weighted: sampled never-touched items (logs without
impressions) are drawn uniformly already and keep ``sampled_negative_weight``. The held-out
impressions that early-stop and calibrate the fit are weighted the same way (the
temperature's intercept then makes the weighted mean prediction equal the weighted click
rate, the IPS estimate of the random-exposure rate); without that the calibration would
restore the logged rate. Under the ``sampled`` protocol (logs without impressions) the
calibration is left unweighted: its level is set by ``base_click_rate``.

The level and slope of P(click)
-------------------------------
Under strong exposure bias the weights leave few effective events (1.2 % of them at
``--exposure-bias 2``), and a calibration on the usual 5 % of training events is then mostly
noise: the weighted click rate of such a sample has a standard deviation of 9 % of its value,
and the simulator's mean P(click) on randomly exposed items was 10 % off (ECE 0.036) for that
reason. So a debiased fit calibrates on the whole held-out 10 % (both halves: the fidelity
report's evaluation half too, which a two-parameter map barely overfits), and sets the level
from every train-split event (:func:`uniform_click_rate`, the self-normalised IPS estimate of
the click rate under uniform exposure, 2 % standard deviation there): the calibration's shift
makes the model's mean P(click) over uniformly drawn items at the held-out states equal to it
(``Calibration.with_base_rate``). Only labels and weights enter that estimate, no model output,
so the training events do not bias it. Measured (``benchmarks/sim_validation.py``): ECE 0.036
-> 0.011, mean prediction +10 % -> +3 %.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor

from seqrec.data.sequences import SequenceData
from seqrec.infra.errors import SeqrecError
from seqrec.simulators.config import DEBIAS_METHODS

__all__ = ["DebiasWeights", "PopularityExposure", "batch_weights", "debias_weights", "debias_warnings", "ips_weights",
           "uniform_click_rate"]

LOW_ESS_SHARE = 0.1
"""Warn when the training rows' effective sample size under the weights is below this share of them."""
LOW_KEPT_MASS = 0.8
"""Warn when clipping keeps less than this share of the training rows' unclipped weight (the
correction is then partial: the clipped events are the rarely shown ones it exists for)."""


@dataclass(frozen=True)
class PopularityExposure:
    """Item-marginal exposure model: P(the exposed item is i) = (n_i + 1) / (N + M).

    :param probs: exposure probability of every item, shape (M,), sums to 1.
    :param n_events: N, the events it was fitted on.
    """

    probs: np.ndarray
    n_events: int

    @classmethod
    def fit(cls, items: np.ndarray, n_items: int) -> "PopularityExposure":
        """Fit on the exposed items ``items (N,)`` of a catalogue of ``n_items`` (add-one smoothing)."""
        counts = np.bincount(np.asarray(items, np.int64), minlength=n_items).astype(np.float64)
        return cls(probs=(counts + 1.0) / (counts.sum() + n_items), n_events=int(len(items)))

    def propensity(self, items: np.ndarray) -> np.ndarray:
        """Exposure propensity of ``items`` (any shape), same shape, float64."""
        return self.probs[np.asarray(items, np.int64)]

    def to_dict(self) -> dict[str, Any]:
        return {"name": "item popularity", "formula": "(n_i + 1) / (N + M) over the training rows' events",
                "n_events": self.n_events, "min": float(self.probs.min()), "max": float(self.probs.max())}


def ips_weights(propensity: np.ndarray, reference: float, max_weight: float) -> np.ndarray:
    """IPS weights ``min(reference / p, max_weight)`` of propensities ``p (n,)``, float32 (module docstring)."""
    return np.minimum(reference / np.asarray(propensity, np.float64), max_weight).astype(np.float32)


def uniform_click_rate(labels: np.ndarray, weights: np.ndarray) -> float:
    """Self-normalised IPS estimate of the click rate under uniform exposure, ``sum(w y) / sum(w)``,
    from 0/1 ``labels (n,)`` and unclipped inverse-propensity ``weights (n,)`` (module docstring)."""
    w = np.asarray(weights, np.float64)
    if len(w) == 0 or not w.sum() > 0:
        raise SeqrecError("uniform_click_rate needs at least one event with a positive weight")
    return float(np.dot(w, np.asarray(labels, np.float64)) / w.sum())


def batch_weights(w: Tensor, method: str) -> Tensor:
    """The loss weights of one batch's logged pairs from their IPS weights ``w (B,)``:
    ``ips`` as is, ``snips`` divided by their batch mean (so they average 1 in every batch)."""
    return w / w.mean() if method == "snips" else w


@dataclass(frozen=True)
class DebiasWeights:
    """IPS weights of every event of a log, and what made them.

    :param events: weight of every event, shape (n_events,) float32 (gathered per batch and
        for the held-out pairs that pick the epoch).
    :param unclipped: ``reference / p`` of every event, shape (n_events,) float64: the final
        calibration's weights. Its two parameters set the level of P(click), and clipped weights
        would put part of the logged click rate back (at ``--exposure-bias 2`` a clip of 10
        keeps 63 % of the weight mass: the weighted click rate is then 0.33 where random
        exposure gives 0.25); two parameters tolerate the variance of unclipped weights.
    :param method: ``ips`` or ``snips``.
    :param record: how the weights were made (``fidelity.json`` → ``debias``).
    """

    events: np.ndarray
    unclipped: np.ndarray
    method: str
    record: dict[str, Any]


def event_propensities(seq: SequenceData, rows: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Exposure propensity of every event ``(n_events,)`` float64 and where it came from: the
    ``pscore`` column when the log has one (checked to lie in (0, 1]), else the
    :class:`PopularityExposure` model fitted on the training ``rows``."""
    pscore = getattr(seq, "pscore", None)
    if pscore is not None:
        p = np.asarray(pscore, np.float64)
        bad = ~(np.isfinite(p) & (p > 0) & (p <= 1))
        if bad.any():
            raise SeqrecError(f"pscore column: {int(bad.sum())} events have a propensity outside (0, 1] "
                              f"(first: event {int(np.argmax(bad))}, {p[np.argmax(bad)]!r}); debiasing needs one for every event")
        return p, {"propensity_source": "pscore column", "estimated_from_log": False}
    model = PopularityExposure.fit(seq.items[rows], seq.n_items)
    return model.propensity(seq.items), {"propensity_source": "exposure model", "estimated_from_log": True,
                                         "exposure_model": model.to_dict()}


def debias_weights(seq: SequenceData, rows: np.ndarray, method: str, max_weight: float) -> DebiasWeights | None:
    """The IPS weights of ``method`` for a fit on the training ``rows (n,)`` of ``seq``; None for ``none``."""
    if method == "none":
        return None
    if method not in DEBIAS_METHODS:
        raise SeqrecError(f"debias={method!r}: must be one of {', '.join(DEBIAS_METHODS)}")
    p, source = event_propensities(seq, rows)
    reference = float(len(rows) / np.sum(1.0 / p[rows])) if len(rows) else 1.0
    w = ips_weights(p, reference, max_weight)
    wr = w[rows].astype(np.float64)
    kept = float(wr.sum() / np.sum(reference / p[rows])) if len(rows) else 1.0
    ess = float(wr.sum() ** 2 / max(len(wr) * np.square(wr).sum(), 1e-300)) if len(wr) else 0.0
    record = {"method": method, **source, "max_weight": max_weight, "reference_propensity": reference,
              "train_rows": int(len(rows)), "clipped_share": round(float((reference / p[rows] > max_weight).mean()), 6) if len(rows) else 0.0,
              "weight_min": round(float(wr.min()), 6) if len(wr) else None, "weight_mean": round(float(wr.mean()), 6) if len(wr) else None,
              "weight_max": round(float(wr.max()), 6) if len(wr) else None, "effective_sample_share": round(ess, 6),
              "weight_mass_kept": round(kept, 6)}  # fmt: skip
    return DebiasWeights(events=w, unclipped=reference / p, method=method, record=record)


def debias_warnings(record: dict[str, Any]) -> list[str]:
    """What the weights' bias-variance trade-off costs (``record`` of :func:`debias_weights`): a small
    effective sample (variance) or much weight clipped away (a partial correction)."""
    out = []
    share, kept = record.get("effective_sample_share"), record.get("weight_mass_kept")
    if share is not None and share < LOW_ESS_SHARE:
        out.append(f"debias={record['method']}: the weights leave an effective sample of {share:.1%} of the training rows, "
                   f"so the fit rests on few events (lower SimulatorConfig.debias_max_weight?)")
    if kept is not None and kept < LOW_KEPT_MASS:
        out.append(f"debias={record['method']}: clipping at {record['max_weight']:g} keeps {kept:.0%} of the inverse-propensity "
                   f"weight, so the correction is partial (raise SimulatorConfig.debias_max_weight?)")
    return out
