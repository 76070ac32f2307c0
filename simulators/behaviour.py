r"""What follows a click: the behaviour (cart, purchase …) or the rating.

An *outcome* is one ``(behaviour, value)`` pair seen on positive training events (for the
synthetic log: click/1, cart/2, purchase/3; for MovieLens: rating/1 … rating/5). With
more than ``max_outcomes`` distinct pairs (continuous values) outcomes collapse to the
behaviour, with its mean value.

.. math::
    P(c \mid u, i) \propto \frac{P(c \mid i)\, P(c \mid u)}{P(c)}, \qquad
    P(c \mid i) = \frac{n_{ic} + \alpha P(c)}{n_i + \alpha}

(the same smoothing for users): a product of item and user experts over the global prior,
with ``alpha`` pseudo-counts. Which experts are used (none, item, user, both) is chosen by
the log-likelihood of the validation split's positives (the synthetic funnel depends on the
item only; MovieLens ratings on both). Sampling is one inverse-CDF draw per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from seqrec.data.sequences import SPLIT_NAMES, SequenceData


@dataclass
class OutcomeModel:
    """Per-item and per-user smoothed outcome distributions.

    :param behaviour: behaviour index of each outcome, shape (C,).
    :param value: value of each outcome, shape (C,).
    :param log_item: log P(c | i) - log P(c), shape (M, C).
    :param log_user: log P(c | u), shape (N, C).
    """

    behaviour: Tensor
    value: Tensor
    log_item: Tensor
    log_user: Tensor
    experts: str = "item+user"

    @property
    def n_outcomes(self) -> int:
        return int(self.behaviour.shape[0])

    @classmethod
    def fit(cls, seq: SequenceData, positive: np.ndarray, alpha: float = 5.0, max_outcomes: int = 16) -> "OutcomeModel":
        """Count outcomes of positive train-split events (all positives if the split has none);
        choose the experts on the validation split's positives."""
        mask = positive & (seq.split == SPLIT_NAMES["train"])
        if not mask.any():
            mask = positive
        beh = seq.behaviours[mask].astype(np.int64)
        val = seq.values[mask].astype(np.float64)
        pairs = np.stack([beh, val], axis=1)
        uniq, code = np.unique(pairs, axis=0, return_inverse=True)
        code = code.reshape(-1)
        collapsed = len(uniq) > max_outcomes
        if collapsed:
            ub, code = np.unique(beh, return_inverse=True)
            means = np.bincount(code, weights=val) / np.bincount(code)
            uniq = np.stack([ub, means], axis=1)
        C = len(uniq)
        prior = (np.bincount(code, minlength=C) + 1.0) / (len(code) + C)

        def smoothed(keys: np.ndarray, n: int) -> np.ndarray:
            counts = np.zeros((n, C))
            np.add.at(counts, (keys, code), 1.0)
            return np.log((counts + alpha * prior) / (counts.sum(1, keepdims=True) + alpha))

        log_item = smoothed(seq.items[mask], seq.n_items) - np.log(prior)
        log_user = smoothed(seq.users[mask], seq.n_users)
        # choose the experts by the likelihood of the validation positives
        vmask = positive & (seq.split == SPLIT_NAMES["valid"])
        vb, vv = seq.behaviours[vmask].astype(np.int64), seq.values[vmask].astype(np.float64)
        if collapsed:
            vcode = np.searchsorted(uniq[:, 0], vb)
            known = (vcode < C) & (uniq[np.minimum(vcode, C - 1), 0] == vb)
        else:
            hit = (uniq[None, :, 0] == vb[:, None]) & np.isclose(uniq[None, :, 1], vv[:, None])
            vcode, known = hit.argmax(1), hit.any(1)
        vu, vi, vcode = seq.users[vmask][known], seq.items[vmask][known], vcode[known]
        options = {"none": (0.0, 0.0), "item": (1.0, 0.0), "user": (0.0, 1.0), "item+user": (1.0, 1.0)}
        scores = {}
        for name, (wi, wu) in options.items():
            logits = wi * log_item[vi] + (wu * log_user[vu] if wu else np.log(prior)[None, :])
            logp = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
            scores[name] = float(logp[np.arange(len(vcode)), vcode].mean()) if len(vcode) else 0.0
        experts = max(scores, key=lambda k: (scores[k], -list(options).index(k))) if len(vcode) else "item+user"
        wi, wu = options[experts]
        user_table = log_user if wu else np.broadcast_to(np.log(prior), log_user.shape)
        return cls(behaviour=torch.from_numpy(uniq[:, 0].astype(np.int64)),
                   value=torch.from_numpy(uniq[:, 1].astype(np.float32)),
                   log_item=torch.from_numpy((wi * log_item).astype(np.float32)),
                   log_user=torch.from_numpy(np.ascontiguousarray(user_table, dtype=np.float32)),
                   experts=experts)

    def probabilities(self, users: Tensor, items: Tensor) -> Tensor:
        """P(outcome | user, item) after a click, shape ``(B, C)`` for ``users, items (B,)``."""
        return torch.softmax(self.log_item[items] + self.log_user[users], dim=-1)

    def sample(self, users: Tensor, items: Tensor, uniform: Tensor) -> tuple[Tensor, Tensor]:
        """Outcome of each row from uniforms ``(B,)``: ``(behaviours (B,) long, values (B,) float)``."""
        cdf = self.probabilities(users, items).cumsum(-1)
        idx = (uniform[:, None] > cdf).sum(-1).clamp_max(self.n_outcomes - 1)
        return self.behaviour[idx], self.value[idx]

    def to(self, device: torch.device | str) -> "OutcomeModel":
        return OutcomeModel(*(t.to(device) for t in (self.behaviour, self.value, self.log_item, self.log_user)),
                            experts=self.experts)

    def state(self) -> dict[str, Tensor]:
        return {"behaviour": self.behaviour, "value": self.value, "log_item": self.log_item, "log_user": self.log_user}
