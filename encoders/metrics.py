r"""Ranking metrics of next-item prediction, under one of two protocols.

``full`` (:func:`target_ranks`): every catalogue item is a candidate, nothing is sampled or
masked. For a target item with score :math:`s_y` among scores :math:`s_1..s_n`, its rank is
:math:`r = 1 + |\{j : s_j > s_y\}|` (ties resolved in the target's favour; with float
scores they practically never occur).

``sampled-N-uniform`` (:func:`sampled_target_ranks`, used by
:func:`~seqrec.encoders.train.evaluate` above ``PretrainConfig.full_ranking_max_items``): the
target competes with :math:`N` items drawn uniformly with replacement for that target (a
draw equal to the target is left out), :math:`r = 1 + |\{k : j_k \ne y,\ s_{j_k} > s_y\}|`,
so :math:`r \le N + 1`. Sampled metrics are higher than full-ranking ones and do not rank
models the same way in general (Krichene & Rendle 2020, "On Sampled Metrics for Item
Recommendation"); compare numbers only under the same protocol.

Then, averaged over targets:

.. math::
    \mathrm{HR@K} = [r \le K], \quad \mathrm{NDCG@K} = \frac{[r \le K]}{\log_2(r + 1)},
    \quad \mathrm{MRR@K} = \frac{[r \le K]}{r}

(one relevant item per target, so the ideal DCG is 1). These are RecBole's definitions
for leave-one-out evaluation.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

METRIC_NAMES: tuple[str, ...] = ("hr@10", "ndcg@10", "mrr@10", "hr@20", "ndcg@20")


def target_ranks(scores: Tensor, targets: Tensor) -> Tensor:
    """1-based rank of each target among all items.

    :param scores: shape (B, n_items).
    :param targets: item ids, shape (B,).
    :return: ranks, shape (B,) int64.
    """
    target_scores = scores.gather(1, targets.long().unsqueeze(1))
    return (scores > target_scores).sum(dim=1) + 1


def sampled_target_ranks(target_scores: Tensor, negative_scores: Tensor, excluded: Tensor) -> Tensor:
    """1-based rank of each target among its sampled negatives.

    :param target_scores: shape (B,).
    :param negative_scores: scores of each target's negatives, shape (B, N).
    :param excluded: ``True`` where a negative is not counted (it is the target itself), shape (B, N).
    :return: ranks in ``1 .. N + 1``, shape (B,) int64.
    """
    return ((negative_scores > target_scores.unsqueeze(1)) & ~excluded).sum(dim=1) + 1


def per_target_metric(ranks: Tensor | np.ndarray, name: str) -> Tensor:
    """One metric (``"hr@10"``, ``"ndcg@20"``, ``"mrr@10"`` …) of every target from 1-based ranks,
    same shape as ``ranks``, float64 (per-target values feed paired comparisons)."""
    r = torch.as_tensor(ranks, dtype=torch.float64)
    kind, _, k = name.partition("@")
    hit = r <= int(k)
    if kind == "hr":
        return hit.double()
    if kind == "ndcg":
        return hit / torch.log2(r + 1)
    if kind == "mrr":
        return hit / r
    raise ValueError(f"unknown metric {name!r}; expected hr@K, ndcg@K or mrr@K")


def ranking_metrics(ranks: Tensor | np.ndarray, names: tuple[str, ...] = METRIC_NAMES) -> dict[str, float]:
    """Mean HR / NDCG / MRR at the cut-offs in ``names`` (``"hr@10"`` …) from 1-based ranks."""
    r = torch.as_tensor(ranks, dtype=torch.float64)
    if r.numel() == 0:
        raise ValueError("no ranks to average (empty evaluation split)")
    return {name: float(per_target_metric(r, name).mean()) for name in names}
