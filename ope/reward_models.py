"""The reward model q̂(x, a) of the Direct Method and Doubly Robust estimators.

:class:`ItemRateModel` is the simplest model that is never wildly wrong: each action's
mean logged reward, shrunk towards the global mean by ``prior_strength`` pseudo-rounds
(so an action logged twice does not get a rate of 0 or 1). It ignores the context, which
keeps DM honest about what it is: a popularity estimate; DR corrects it with the weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqrec.infra.errors import SeqrecError

__all__ = ["ItemRateModel"]


@dataclass
class ItemRateModel:
    """Per-action reward rates shrunk to the global rate: ``(hits + k·r̄) / (count + k)``."""

    prior_strength: float = 10.0
    """k: pseudo-rounds at the global mean reward added to every action."""

    def fit(self, action: np.ndarray, reward: np.ndarray, n_actions: int) -> np.ndarray:
        """Rates per action, shape ``(n_actions,)`` float32, from ``action`` / ``reward`` ``(n,)``."""
        action, reward = np.asarray(action), np.asarray(reward, dtype=np.float64)
        if action.shape != reward.shape or action.ndim != 1 or len(action) == 0:
            raise SeqrecError(f"reward model: action {action.shape} and reward {reward.shape} must be one non-empty length")
        hits = np.bincount(action, weights=reward, minlength=n_actions)
        counts = np.bincount(action, minlength=n_actions)
        return ((hits + self.prior_strength * reward.mean()) / (counts + self.prior_strength)).astype(np.float32)

    def predict(self, rates: np.ndarray, n_rounds: int) -> np.ndarray:
        """q̂ for ``n_rounds`` rounds as the estimators take it, shape ``(n_rounds, n_actions, 1)``
        (a broadcast view: no copy per round)."""
        return np.broadcast_to(np.asarray(rates, np.float32)[None, :, None], (n_rounds, len(rates), 1))
