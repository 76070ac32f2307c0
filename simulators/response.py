r"""The click (response) model: a factorisation model over the user, the clicked history and item side features.

It is deliberately a different family from the agent's CNN + GNN encoder (no convolution,
no graph, no sequence network): an agent must not be scored by the network that gives it
its state. It is fitted separately, on the log alone.

Model
-----
For user :math:`u`, clicked history :math:`h = (h_1..h_L)` (left-padded, most recent last,
age :math:`a_k = L - k` counted in clicks) and candidate item :math:`i`:

.. math::
    z(u, h, i) = b_0 + b_i + \langle p_u + \textstyle\sum_k \alpha_k x_{h_k},\ q_i \rangle
    + \langle r_{h_L}, s_i \rangle
    + \hat f_{h_L}^\top M \hat f_i + (\textstyle\sum_k \alpha_k \hat f_{h_k})^\top A \hat f_i
    - \beta_{sim} \textstyle\sum_k w_k\, \mathrm{sim}(h_k, i)
    - \beta_{rep} \textstyle\sum_k w_k\, [h_k = i]

* every item vector (:math:`q, x, r, s` and the bias :math:`b`) is an id embedding plus a
  linear map of the item's inputs: its side features and its standardised log popularity
  in the training events (:func:`~seqrec.simulators.response_fit.model_features`), so
  feature-sharing items share strength;
* :math:`\alpha` = softmax over the valid history columns of learned per-column logits
  (a learned recency profile); :math:`\langle r_{last}, s_i \rangle` is a low-rank
  item-to-item transition from the last click (0 without history);
* :math:`M, A` (``F x F``, side features :math:`\hat f` normalised to unit length) are the
  same two effects at the feature level: which categories / genres follow the last click,
  and which ones the recent history draws the user to (linear, so they fit fast);
* satiation: :math:`w_k = \gamma^{a_k}` for a logged history (learned :math:`\gamma`); in
  simulation :math:`w` is the state's ``satiation`` memory, decayed by :math:`\gamma` per
  click. :math:`\mathrm{sim}(j, i) = \cos(f_j, f_i)` when it is at least the similarity
  threshold, else 0 (:math:`f` = side features, or learned :math:`q` without features),
  and 1 for :math:`j = i`; :math:`\beta_{sim}, \beta_{rep} \ge 0` (softplus).

Fit: :mod:`seqrec.simulators.response_fit`. P(click) is :math:`\sigma(g(z))` with :math:`g`
the calibration map fitted on held-out data
(:class:`~seqrec.simulators.calibration.Calibration`).

Shapes: users ``(B,)``, history ``(B, L)``, items ``(B, K)``, satiation ``(B, L)`` -> ``(B, K)``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ItemTables", "ResponseModel"]


class ResponseModel(nn.Module):
    r"""Factorisation click model (see the module docstring for the logit).

    Args:
        n_users (int): number of users N.
        n_items (int): catalogue size M.
        dim (int): embedding size d.
        max_history (int): history length L.
        item_features (Tensor, optional): model inputs per item, shape ``(M, F)`` (side
            features plus popularity, see :func:`~seqrec.simulators.response_fit.model_features`).
        similarity_features (Tensor, optional): side features that define item similarity
            for satiation, shape ``(M, F_s)``; None: cosine of the learned ``q``.
        similarity_threshold (float): cosine from which two items count as similar.
        item_has_id, user_has_id (Tensor, optional): ``(M,)`` / ``(N,)`` 0/1 — whether an
            item / user gets its own id embedding (``SimulatorConfig.min_id_events``); the
            others rest on side features, popularity and history alone. None: all do.

    Shapes:
        - **input:** users ``(B,)``, history ``(B, L)`` (-1 = pad), items ``(B, K)``,
          satiation ``(B, L)`` or None (then :math:`\gamma^{age}`)
        - **output:** raw (uncalibrated) logits ``(B, K)``
    """

    def __init__(self, n_users: int, n_items: int, dim: int, max_history: int,
                 item_features: Tensor | None = None, similarity_features: Tensor | None = None,
                 similarity_threshold: float = 0.5, item_has_id: Tensor | None = None, user_has_id: Tensor | None = None):
        super().__init__()
        self.n_users, self.n_items, self.dim, self.max_history = n_users, n_items, dim, max_history
        self.similarity_threshold = float(similarity_threshold)
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, 4 * dim + 1)  # [q | x | r | s | b] per item
        n_feat = 0 if item_features is None else int(item_features.shape[1])
        self.feature_map = nn.Linear(n_feat, 4 * dim + 1, bias=False) if n_feat else None
        self.register_buffer("features", None if item_features is None else item_features.float())
        self.register_buffer("item_has_id", None if item_has_id is None else item_has_id.float())
        self.register_buffer("user_has_id", None if user_has_id is None else user_has_id.float())
        if similarity_features is not None:
            sf = similarity_features.float()
            self.register_buffer("similarity_basis", sf / sf.norm(dim=1, keepdim=True).clamp_min(1e-12))
        else:
            self.register_buffer("similarity_basis", None)
        n_side = 0 if similarity_features is None else int(similarity_features.shape[1])
        # feature-level transition (last click -> candidate) and affinity (history -> candidate)
        self.feature_transition = nn.Parameter(torch.zeros(n_side, n_side)) if n_side else None
        self.feature_affinity = nn.Parameter(torch.zeros(n_side, n_side)) if n_side else None
        self.column_logits = nn.Parameter(torch.zeros(max_history))
        self.global_bias = nn.Parameter(torch.zeros(()))
        self.satiation_raw = nn.Parameter(torch.zeros(()))
        self.decay_raw = nn.Parameter(torch.zeros(()))
        self.repeat_raw = nn.Parameter(torch.zeros(()))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.user.weight, std=0.05)
        nn.init.normal_(self.item.weight, std=0.05)
        with torch.no_grad():
            self.item.weight[:, -1] = 0.0
        if self.feature_map is not None:
            nn.init.normal_(self.feature_map.weight, std=0.05)
        nn.init.zeros_(self.column_logits)
        if self.feature_transition is not None:
            nn.init.zeros_(self.feature_transition)
            nn.init.zeros_(self.feature_affinity)
        nn.init.constant_(self.global_bias, -1.0)
        nn.init.constant_(self.satiation_raw, -2.0)  # softplus -> 0.13
        nn.init.constant_(self.decay_raw, 1.0)  # sigmoid -> 0.73
        nn.init.constant_(self.repeat_raw, 0.0)

    def __repr__(self) -> str:
        n_feat = 0 if self.features is None else self.features.shape[1]
        return f"ResponseModel({self.n_users}, {self.n_items}, dim={self.dim}, max_history={self.max_history}, features={n_feat})"

    # -- fitted scalars -------------------------------------------------------------------
    @property
    def decay(self) -> Tensor:
        """gamma: satiation decay per click, in (0, 1)."""
        return torch.sigmoid(self.decay_raw)

    @property
    def satiation_weight(self) -> Tensor:
        """beta_sim >= 0: logit penalty per unit of decayed similar-item memory."""
        return F.softplus(self.satiation_raw)

    @property
    def repeat_weight(self) -> Tensor:
        """beta_rep >= 0: logit penalty per unit of decayed same-item memory."""
        return F.softplus(self.repeat_raw)

    def set_repeat_weight(self, value: float, trainable: bool) -> None:
        """Fix beta_rep to ``value`` (a documented default when the log cannot fit it)."""
        with torch.no_grad():
            v = max(float(value), 1e-6)
            self.repeat_raw.fill_(v + math.log(-math.expm1(-v)))  # inverse softplus
        self.repeat_raw.requires_grad_(trainable)

    def prior_penalty(self, std_user: float, std_item: float, std_context: float, std_bias: float,
                      std_features: float) -> Tensor:
        r"""Sum of squared parameters over the prior variances, :math:`\sum \theta^2 / \sigma^2`
        (a Gaussian prior on every embedding; divide by 2n to add to a mean loss)."""
        d = self.dim
        w = self.item.weight
        pen = self.user.weight.pow(2).sum() / std_user ** 2
        pen = pen + w[:, :d].pow(2).sum() / std_item ** 2 + w[:, d:4 * d].pow(2).sum() / std_context ** 2
        pen = pen + w[:, 4 * d:].pow(2).sum() / std_bias ** 2
        if self.feature_map is not None:
            pen = pen + self.feature_map.weight.pow(2).sum() / std_features ** 2
        if self.feature_transition is not None:
            pen = pen + (self.feature_transition.pow(2).sum() + self.feature_affinity.pow(2).sum()) / std_features ** 2
        return pen

    # -- building blocks ------------------------------------------------------------------
    def item_vectors(self, ids: Tensor) -> Tensor:
        """``[q | x | r | s | b]`` of items, shape ``ids.shape + (4d + 1,)``."""
        out = self.item(ids)
        if self.item_has_id is not None:
            out = out * self.item_has_id[ids].unsqueeze(-1)
        if self.feature_map is not None:
            out = out + self.feature_map(self.features[ids])
        return out

    def item_table(self) -> "ItemTables":
        """All item vectors by role, contiguous, with the feature-level terms folded in (cache it
        for fast simulation): ``q = [q | f]``, ``x = [x | f A]``, ``r = [r | f M]``, ``s = [s | f]``
        so that ``<x, q>`` and ``<r, s>`` include the affinity and transition matrices."""
        full = self.item_vectors(torch.arange(self.n_items, device=self.item.weight.device))
        d = self.dim
        q, x, r, s = full[:, :d], full[:, d:2 * d], full[:, 2 * d:3 * d], full[:, 3 * d:4 * d]
        if self.feature_transition is not None:
            f = self.similarity_basis
            q, s = torch.cat([q, f], 1), torch.cat([s, f], 1)
            x, r = torch.cat([x, f @ self.feature_affinity], 1), torch.cat([r, f @ self.feature_transition], 1)
            z = f
        else:
            z = F.normalize(q.detach(), dim=-1)
        return ItemTables(q=q.contiguous(), x=x.contiguous(), r=r.contiguous(), s=s.contiguous(),
                          b=full[:, 4 * d].contiguous(), z=z.contiguous())

    def history_satiation(self, history: Tensor) -> Tensor:
        """gamma^age of every valid history column (0 at pads), shape ``(B, L)``."""
        L = history.shape[1]
        age = torch.arange(L - 1, -1, -1, device=history.device, dtype=torch.float32)
        return torch.where(history >= 0, self.decay ** age, torch.zeros((), device=history.device))

    def forward(self, users: Tensor, history: Tensor, items: Tensor, satiation: Tensor | None = None,
                tables: "ItemTables | None" = None, feature_delta: Tensor | None = None) -> Tensor:
        """Raw logits ``(B, K)`` (see the class docstring for shapes); ``tables`` = a cached :meth:`item_table`.

        ``feature_delta`` ``(B, K, F)``: a per-row change of the candidates' inputs (training
        only: each row's own item popularity with that row left out).
        """
        t = tables if tables is not None else self.item_table()
        return self.score_items(self.history_terms(users, history, t), items, satiation, t, feature_delta)

    def history_terms(self, users: Tensor, history: Tensor, tables: "ItemTables") -> "HistoryTerms":
        """The parts of the logit that depend on the user and history only (no candidate):
        a simulator caches them until the history changes, i.e. until a click."""
        t = tables
        valid = history >= 0
        h = history.clamp_min(0)
        # learned recency profile over the valid columns
        L = history.shape[1]
        logits = self.column_logits[-L:].expand_as(history).masked_fill(~valid, -1e9)
        alpha = torch.softmax(logits, dim=1) * valid.any(dim=1, keepdim=True)
        taste = torch.einsum("bl,bld->bd", alpha, t.x[h])  # history part, (B, D)
        user = self.user(users) if self.user_has_id is None else self.user(users) * self.user_has_id[users].unsqueeze(-1)
        taste = taste + F.pad(user, (0, taste.shape[1] - self.dim))
        last = t.r[h[:, -1]] * valid[:, -1:].to(taste.dtype)  # transition from the last click
        return HistoryTerms(taste=taste, last=last, h=h, valid=valid, basis=t.z[h])

    def score_items(self, terms: "HistoryTerms", items: Tensor, satiation: Tensor | None, tables: "ItemTables",
                    feature_delta: Tensor | None = None) -> Tensor:
        """Raw logits ``(B, K)`` of ``items`` given :meth:`history_terms` (see :meth:`forward`)."""
        t = tables
        q, s, b = t.q[items], t.s[items], t.b[items]  # (B, K, D), (B, K, D), (B, K)
        if feature_delta is not None and self.feature_map is not None:
            d = self.dim
            dv = self.feature_map(feature_delta)  # linear: the change of [q | x | r | s | b]
            q = q + F.pad(dv[..., :d], (0, q.shape[-1] - d))
            s = s + F.pad(dv[..., 3 * d:4 * d], (0, s.shape[-1] - d))
            b = b + dv[..., 4 * d]
        z = self.global_bias + b + torch.einsum("bd,bkd->bk", terms.taste, q) + torch.einsum("bd,bkd->bk", terms.last, s)
        if satiation is None:
            satiation = self.history_satiation(terms.h.masked_fill(~terms.valid, -1))
        sim, same = self.similarity(terms, items, t.z)
        return z - torch.einsum("bl,blk->bk", satiation, self.satiation_weight * sim + self.repeat_weight * same)

    def catalogue_terms(self, terms: "HistoryTerms", tables: "ItemTables") -> tuple[Tensor, Tensor]:
        """:meth:`score_items` of every item, split into what a step's satiation does not change:
        the base logits ``(B, M)`` and the satiation weights ``(B, L, M)`` that the step's
        satiation ``(B, L)`` contracts (:meth:`score_catalogue`). A simulator caches them until
        the history changes, so a step scores an item with two gathers and one contraction."""
        t = tables
        (B, L), M = terms.h.shape, t.q.shape[0]
        z0 = self.global_bias + t.b.expand(B, M) + terms.taste @ t.q.T + terms.last @ t.s.T
        # similarity() over every item: [h_l = i] by a scatter, the cosines by one matmul
        valid = terms.valid[:, :, None].to(t.z.dtype)
        same = torch.zeros(B, L, M, dtype=t.z.dtype, device=t.z.device).scatter_(2, terms.h[:, :, None], valid)
        cos = terms.basis @ t.z.T
        sim = torch.maximum(cos.masked_fill_(cos < self.similarity_threshold, 0.0), same) * valid
        return z0, self.satiation_weight * sim + self.repeat_weight * same

    @staticmethod
    def score_catalogue(z0: Tensor, weights: Tensor, items: Tensor, satiation: Tensor) -> Tensor:
        """Raw logits ``(B, K)`` of ``items`` from :meth:`catalogue_terms` ``(B, M), (B, L, M)``:
        the same function as :meth:`score_items`."""
        L = weights.shape[1]
        return z0.gather(1, items) - torch.einsum("bl,blk->bk", satiation, weights.gather(2, items[:, None, :].expand(-1, L, -1)))

    def similarity(self, terms: "HistoryTerms", items: Tensor, basis: Tensor) -> tuple[Tensor, Tensor]:
        """Thresholded cosine ``sim(h_k, i)`` (1 for the same item) and ``[h_k = i]``, each ``(B, L, K)``;
        ``basis``: unit-length item vectors ``(M, F)`` whose cosine defines similarity
        (``terms.basis`` holds those of the history)."""
        h, valid = terms.h, terms.valid
        same = ((h[:, :, None] == items[:, None, :]) & valid[:, :, None]).to(basis.dtype)
        cos = torch.einsum("blf,bkf->blk", terms.basis, basis[items])
        sim = torch.where(cos >= self.similarity_threshold, cos, torch.zeros((), device=cos.device))
        return torch.maximum(sim, same) * valid[:, :, None].to(basis.dtype), same


class HistoryTerms(NamedTuple):
    """The candidate-free parts of :meth:`ResponseModel.forward` for B users: ``taste``,
    ``last`` ``(B, D)``, history ids ``h`` (pads clamped to 0) and ``valid`` ``(B, L)``, and
    the history items' similarity basis ``basis`` ``(B, L, F)``."""

    taste: Tensor
    last: Tensor
    h: Tensor
    valid: Tensor
    basis: Tensor


class ItemTables(NamedTuple):
    """Every item's vectors by role (:meth:`ResponseModel.item_table`): ``q, x, r, s`` ``(M, D)``
    (``D = d + F``, feature terms folded in), ``b`` ``(M,)``, similarity basis ``z`` ``(M, F)``."""

    q: Tensor
    x: Tensor
    r: Tensor
    s: Tensor
    b: Tensor
    z: Tensor

    def to(self, device: torch.device | str) -> "ItemTables":
        return ItemTables(*(t.to(device) for t in self))
