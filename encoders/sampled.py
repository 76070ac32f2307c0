r"""Sampled softmax with shared negatives and the log-Q correction, for large catalogues.

The full softmax of next-item prediction costs one ``(B, n_items)`` product (and its
backward) per step and per loss. Above ``PretrainConfig.sampled_softmax_above`` items,
pretraining replaces it by a sampled softmax (Jean et al. 2015; Bengio & Senécal 2008):
each step draws ``m`` negatives :math:`S = (j_1..j_m)` with replacement from a proposal
:math:`Q`, *shared* by every example of the batch (one ``(m, d)`` gather and one
``(B, m)`` product), and scores the target :math:`y` against them with the logits corrected
by the log of their expected count in the draw (the log-Q correction; Yi et al. 2019,
"Sampling-bias-corrected neural modeling for large corpus item recommendations"):

.. math::
    \tilde o_j = o_j - \log(m\,Q(j)), \qquad
    \mathcal{L} = -\tilde o_y + \log\Big(e^{\tilde o_y} + \sum_{k=1}^{m} [j_k \ne y]\, e^{\tilde o_{j_k}}\Big)

where :math:`o_j = s^\top e_j + b_j` is the full-softmax logit. A negative that happens to
be the example's own target (an *accidental hit*) is removed (its logit is :math:`-\infty`).
This is TensorFlow's ``sampled_softmax_loss`` with ``remove_accidental_hits=True``, with one
draw per step instead of one per example. :math:`\sum_k e^{\tilde o_{j_k}}` is an
importance-sampling estimate of the partition function over the catalogue, so the loss
approaches the full softmax as ``m`` grows.

The proposal is the smoothed train popularity, :math:`Q(j) \propto (c_j + 1)^{\alpha}`
(word2vec's unigram\ :sup:`0.75` with add-one smoothing, so an item unseen in train can
still be drawn and every correction is finite): popular items, the hard negatives of
next-item prediction, are drawn more often than uniformly, and the correction removes the
bias this puts on their scores.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


class NegativeSampler:
    """Draws the shared negatives of a step and their log-Q corrections.

    :param counts: train event count of every item, shape (n_items,).
    :param n_sampled: negatives per step, ``m``.
    :param alpha: proposal exponent: :math:`Q(j) \\propto (c_j + 1)^{\\alpha}`; 0 = uniform.

    Shapes: ``draw(generator) -> ((m,) int64 ids, (m,) float32 log expected counts)``;
    ``log_expected_count(items (…)) -> (…)``.
    """

    def __init__(self, counts: np.ndarray, n_sampled: int, alpha: float = 0.75):
        if n_sampled < 1:
            raise ValueError(f"n_sampled must be >= 1, not {n_sampled}")
        weights = torch.from_numpy(np.asarray(counts, np.float64) + 1.0) ** alpha
        q = weights / weights.sum()  # float64 until stored
        self.n_sampled = n_sampled
        self.alpha = alpha
        self.probs = q.float()
        self.log_count = torch.log(n_sampled * q).float()  # log(m Q(j))
        self._cdf = torch.cumsum(q, 0)  # inverse-CDF draws: O(m log n) a step, any catalogue size

    def to(self, device: torch.device | str) -> "NegativeSampler":
        """Keep the tables on ``device`` (draws still use a CPU generator, so they do not depend on it)."""
        self.probs, self.log_count, self._cdf = self.probs.to(device), self.log_count.to(device), self._cdf.to(device)
        return self

    def draw(self, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``m`` item ids drawn with replacement from :math:`Q` and :math:`\\log(m Q(j))` of each."""
        u = torch.rand(self.n_sampled, generator=generator, dtype=torch.float64).to(self._cdf.device)
        ids = torch.searchsorted(self._cdf, u, right=True).clamp_(max=len(self._cdf) - 1)
        return ids, self.log_count[ids]

    def log_expected_count(self, items: Tensor) -> Tensor:
        """:math:`\\log(m Q(j))` of the given item ids (the targets' correction)."""
        return self.log_count[items]

    def __repr__(self) -> str:
        return f"NegativeSampler({len(self.probs)} items, n_sampled={self.n_sampled}, alpha={self.alpha})"


def corrected_logits(target_logits: Tensor, negative_logits: Tensor, target_log_q: Tensor, negative_log_q: Tensor, hits: Tensor) -> Tensor:
    """Logits of the sampled softmax, target first: ``(B,), (B, m) -> (B, 1 + m)``.

    :param target_logits: :math:`o_y` of each example, shape (B,).
    :param negative_logits: :math:`o_{j_k}` of the shared negatives, shape (B, m).
    :param target_log_q: :math:`\\log(m Q(y))`, shape (B,).
    :param negative_log_q: :math:`\\log(m Q(j_k))`, shape (m,).
    :param hits: ``True`` where a negative is the example's target, shape (B, m); set to ``-inf``.
    """
    negatives = (negative_logits - negative_log_q).masked_fill(hits, float("-inf"))
    return torch.cat([(target_logits - target_log_q).unsqueeze(1), negatives], dim=1)


def sampled_softmax_loss(
    states: list[Tensor], target_vectors: Tensor, target_bias: Tensor, negative_vectors: Tensor, negative_bias: Tensor,
    target_log_q: Tensor, negative_log_q: Tensor, hits: Tensor,
) -> list[Tensor]:  # fmt: skip
    """Mean sampled-softmax cross-entropy of each state against the same targets and negatives.

    :param states: states to score, each (B, d) (the fused state and, for the branch loss, each branch's).
    :param target_vectors: output embeddings of the targets, (B, d); ``target_bias`` (B,).
    :param negative_vectors: output embeddings of the shared negatives, (m, d); ``negative_bias`` (m,).
    :param target_log_q: (B,); ``negative_log_q``: (m,); ``hits``: (B, m) (see :func:`corrected_logits`).
    :return: one scalar loss per state.
    """
    zeros = torch.zeros(len(target_bias), dtype=torch.long)  # the target is column 0
    losses = []
    for state in states:
        target_logits = (state * target_vectors).sum(-1) + target_bias
        negative_logits = state @ negative_vectors.T + negative_bias
        logits = corrected_logits(target_logits, negative_logits, target_log_q, negative_log_q, hits)
        losses.append(torch.nn.functional.cross_entropy(logits, zeros))
    return losses
