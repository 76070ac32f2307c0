"""What a log can and cannot say about a policy's value: the checks printed beside every estimate.

An off-policy estimate is a number whatever the data; these checks say when it means
nothing. Each problem is one short line (a *flag*), stored in ``ope.json`` and printed in
the table:

* **log-level** (:func:`log_flags`): a constant reward (a positives-only log rewards every
  logged action, so every estimator returns that constant for every policy); propensities
  estimated from the very log being evaluated (the weights then inherit the fit's errors,
  and IPS is not unbiased).
* **policy-level** (:func:`weight_diagnostics`): the importance weights' effective sample
  size ``ESS = (Σw)² / Σw²`` (Kish) and their maximum; an ESS below
  :attr:`DiagnosticsConfig.min_ess` means a handful of rounds decide the estimate.
* **estimate-level** (:func:`estimate_flags`): an unbiased estimator (IPS, DR) outside the
  observed reward range, which no policy's true value can be.

>>> import numpy as np

from seqrec.ope.estimators import importance_weights
>>> d = weight_diagnostics(np.array([0, 1, 0, 1]), np.full(4, 0.5), np.array([[1.0, 0.0]] * 4)[:, :, None])
>>> d["ess"], d["max_weight"]
(2.0, 2.0)
>>> log_flags(np.ones(5), "known")
['constant reward (every logged reward is 1): the log cannot tell policies apart']
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqrec.ope.estimators import importance_weights

__all__ = ["DiagnosticsConfig", "estimate_flags", "log_flags", "weight_diagnostics"]


@dataclass
class DiagnosticsConfig:
    """Thresholds of the flags."""

    min_ess: float = 100.0
    """Flag a policy whose importance weights' effective sample size is below this many rounds."""


def log_flags(reward: np.ndarray, propensity_source: str) -> list[str]:
    """Problems of the log itself, the same for every policy evaluated on it."""
    flags = []
    if reward.size and reward.min() == reward.max():
        flags.append(f"constant reward (every logged reward is {reward.flat[0]:g}): the log cannot tell policies apart")
    if propensity_source == "estimated":
        flags.append("propensities estimated from this same log: IPS/DR are not unbiased, read them as a rough guide")
    return flags


def weight_diagnostics(action: np.ndarray, pscore: np.ndarray, action_dist: np.ndarray, config: DiagnosticsConfig = DiagnosticsConfig()) -> dict:
    """ESS and max of the weights ``π_e(a_i|x_i) / π_0(a_i|x_i)`` (shapes as in :mod:`seqrec.ope.checks`), with their flags."""
    w = importance_weights(action, pscore, action_dist).astype(np.float64)
    total, squares = w.sum(), np.square(w).sum()
    ess = float(total**2 / squares) if squares > 0 else 0.0
    flags = []
    if ess < config.min_ess:
        flags.append(f"effective sample size {ess:.1f} < {config.min_ess:g} rounds: a few rounds decide IPS/SNIPS/DR")
    return {"ess": ess, "max_weight": float(w.max(initial=0.0)), "flags": flags}


_UNBIASED = ("ips", "dr")


def estimate_flags(name: str, estimate: float, reward: np.ndarray) -> list[str]:
    """An unbiased estimator's value outside ``[min reward, max reward]``: variance, not information."""
    if name in _UNBIASED and np.isfinite(estimate) and reward.size and not reward.min() <= estimate <= reward.max():
        return [f"{name} = {estimate:.4g} lies outside the reward range [{reward.min():g}, {reward.max():g}]"]
    return []
