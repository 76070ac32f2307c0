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
  in the training events (:func:`model_features`), so feature-sharing items share strength;
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

Fit (:func:`fit_response_model`): maximum a posteriori -- summed binary cross-entropy over
each row's labelled pairs (the logged item, plus sampled never-touched items for logs
without real negatives) plus Gaussian priors on the embeddings -- with Adam and a cosine
schedule, keeping the epoch with the best calibrated held-out log-loss.

P(click) is :math:`\sigma(g(z))` with :math:`g` the calibration map fitted on held-out data
(:class:`Calibration`).

Shapes: users ``(B,)``, history ``(B, L)``, items ``(B, K)``, satiation ``(B, L)`` -> ``(B, K)``.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqrec.data.sequences import SPLIT_NAMES, SequenceData
from seqrec.simulators.config import SimulatorConfig
from seqrec.simulators.examples import ClickLog, UntouchedSampler


class ResponseModel(nn.Module):
    r"""Factorisation click model (see the module docstring for the logit).

    Args:
        n_users (int): number of users N.
        n_items (int): catalogue size M.
        dim (int): embedding size d.
        max_history (int): history length L.
        item_features (Tensor, optional): model inputs per item, shape ``(M, F)`` (side
            features plus popularity, see :func:`model_features`).
        similarity_features (Tensor, optional): side features that define item similarity
            for satiation, shape ``(M, F_s)``; None: cosine of the learned ``q``.
        similarity_threshold (float): cosine from which two items count as similar.

    Shapes:
        - **input:** users ``(B,)``, history ``(B, L)`` (-1 = pad), items ``(B, K)``,
          satiation ``(B, L)`` or None (then :math:`\gamma^{age}`)
        - **output:** raw (uncalibrated) logits ``(B, K)``
    """

    def __init__(self, n_users: int, n_items: int, dim: int, max_history: int,
                 item_features: Tensor | None = None, similarity_features: Tensor | None = None,
                 similarity_threshold: float = 0.5):
        super().__init__()
        self.n_users, self.n_items, self.dim, self.max_history = n_users, n_items, dim, max_history
        self.similarity_threshold = float(similarity_threshold)
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, 4 * dim + 1)  # [q | x | r | s | b] per item
        n_feat = 0 if item_features is None else int(item_features.shape[1])
        self.feature_map = nn.Linear(n_feat, 4 * dim + 1, bias=False) if n_feat else None
        self.register_buffer("features", None if item_features is None else item_features.float())
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
                tables: "ItemTables | None" = None) -> Tensor:
        """Raw logits ``(B, K)`` (see the class docstring for shapes); ``tables`` = a cached :meth:`item_table`."""
        t = tables if tables is not None else self.item_table()
        valid = history >= 0
        h = history.clamp_min(0)
        q = t.q[items]  # (B, K, D)
        # learned recency profile over the valid columns
        L = history.shape[1]
        logits = self.column_logits[-L:].expand_as(history).masked_fill(~valid, -1e9)
        alpha = torch.softmax(logits, dim=1) * valid.any(dim=1, keepdim=True)
        taste = torch.einsum("bl,bld->bd", alpha, t.x[h])  # history part, (B, D)
        taste = taste + F.pad(self.user(users), (0, taste.shape[1] - self.dim))
        last = t.r[h[:, -1]] * valid[:, -1:].to(q.dtype)  # transition from the last click
        z = self.global_bias + t.b[items] + torch.einsum("bd,bkd->bk", taste, q) + torch.einsum("bd,bkd->bk", last, t.s[items])
        if satiation is None:
            satiation = self.history_satiation(history)
        sim, same = self.similarity(h, valid, items, t.z)
        return z - torch.einsum("bl,blk->bk", satiation, self.satiation_weight * sim + self.repeat_weight * same)

    def similarity(self, h: Tensor, valid: Tensor, items: Tensor, basis: Tensor) -> tuple[Tensor, Tensor]:
        """Thresholded cosine ``sim(h_k, i)`` (1 for the same item) and ``[h_k = i]``, each ``(B, L, K)``;
        ``basis``: unit-length item vectors ``(M, F)`` whose cosine defines similarity."""
        same = ((h[:, :, None] == items[:, None, :]) & valid[:, :, None]).to(basis.dtype)
        cos = torch.einsum("blf,bkf->blk", basis[h], basis[items])
        sim = torch.where(cos >= self.similarity_threshold, cos, torch.zeros((), device=cos.device))
        return torch.maximum(sim, same) * valid[:, :, None].to(basis.dtype), same


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


@dataclass
class Calibration:
    """Monotone map from raw logit to calibrated logit, fitted on held-out data.

    ``temperature``: ``a * z + b`` with ``a > 0``. ``isotonic``: piecewise-linear through
    ``(x, y)`` knots (y are probabilities, clipped to [1e-4, 1 - 1e-4]).
    """

    kind: str = "temperature"
    a: float = 1.0
    b: float = 0.0
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)

    def probability(self, z: Tensor) -> Tensor:
        """Calibrated P(click) for raw logits ``z`` (any shape)."""
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
        return {"kind": self.kind, "a": self.a, "b": self.b, "x": list(self.x), "y": list(self.y)}


@dataclass
class HeldOut:
    """Scored held-out pairs: ``users (n,)``, ``history (n, L)``, ``items (n,)``, ``labels (n,)``."""

    users: np.ndarray
    history: np.ndarray
    items: np.ndarray
    labels: np.ndarray
    protocol: str


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
        return HeldOut(seq.users[pos], hist, seq.items[pos], clicks.positive[pos].astype(np.float32), protocol)
    pos = seq.positions(split) if isinstance(split, str) else np.asarray(split, np.int64)
    pos = pos[clicks.positive[pos]]
    hist, _ = clicks.histories(pos, L)
    users = seq.users[pos]
    k = cfg.eval_negatives
    neg = sampler.sample(users, k, rng)
    items = np.concatenate([seq.items[pos][:, None], neg], axis=1).reshape(-1)
    labels = np.zeros((len(pos), k + 1), np.float32)
    labels[:, 0] = 1
    return HeldOut(np.repeat(users, k + 1), np.repeat(hist, k + 1, axis=0), items, labels.reshape(-1), protocol)


@torch.no_grad()
def score_pairs(model: ResponseModel, data: HeldOut, batch: int = 4096) -> np.ndarray:
    """Raw logits of held-out pairs, shape (n,)."""
    model.eval()
    out = []
    tables = model.item_table()
    for s in range(0, len(data.items), batch):
        sl = slice(s, s + batch)
        z = model(torch.from_numpy(data.users[sl]), torch.from_numpy(data.history[sl]),
                  torch.from_numpy(data.items[sl])[:, None], tables=tables)
        out.append(z[:, 0].numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


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


def model_features(seq: SequenceData, rows: np.ndarray, positive: np.ndarray, side: Tensor | None) -> Tensor:
    """Item inputs of the response model, shape ``(M, F + 1 or 2)``: the side features, plus
    standardised ``log(1 + count)`` of the item's training events (exposures) and, for logs with
    real negatives, of its training clicks -- item popularity, the strongest generic CTR feature."""
    exposures = np.log1p(np.bincount(seq.items[rows], minlength=seq.n_items))
    cols = [exposures]
    if not positive[rows].all():
        cols.append(np.log1p(np.bincount(seq.items[rows[positive[rows]]], minlength=seq.n_items)))
    pop = np.stack(cols, axis=1)
    pop = (pop - pop.mean(0)) / np.maximum(pop.std(0), 1e-6)
    pop_t = torch.from_numpy(pop.astype(np.float32))
    return pop_t if side is None else torch.cat([side, pop_t], dim=1)


@dataclass
class FitResult:
    """What :func:`fit_response_model` returns: the best model, its calibration and a log."""

    model: ResponseModel
    calibration: Calibration
    info: dict


def fit_response_model(seq: SequenceData, clicks: ClickLog, cfg: SimulatorConfig,
                       on_epoch: Callable[[int, dict], None] | None = None) -> FitResult:
    """Train the response model for each embedding size in ``cfg.dims`` and keep the best.

    Each size is fitted by :func:`fit_response_model_dim` on the same rows and judged on the
    same held-out pairs; the one with the lowest calibrated held-out log-loss wins (ties: the
    first). Why: the right capacity depends on the log -- the id embeddings of a small
    synthetic log overfit at 32 dimensions, while ML-100K's collaborative signal needs them.
    ``info["dim_search"]`` lists every candidate's score; ``on_epoch`` entries carry ``dim``.
    """
    best: FitResult | None = None
    scores = []
    for dim in cfg.dims:
        fit = fit_response_model_dim(seq, clicks, cfg, dim, on_epoch)
        scores.append({"dim": dim, "valid_log_loss": fit.info["valid_log_loss"], "best_epoch": fit.info["best_epoch"],
                       "seconds": fit.info["seconds"]})
        if best is None or fit.info["valid_log_loss"] < best.info["valid_log_loss"]:
            best = fit
    assert best is not None
    best.info["dim_search"] = scores
    best.info["seconds"] = round(sum(s["seconds"] for s in scores), 2)
    return best


def fit_response_model_dim(seq: SequenceData, clicks: ClickLog, cfg: SimulatorConfig, dim: int,
                           on_epoch: Callable[[int, dict], None] | None = None) -> FitResult:
    """Train the response model with embedding size ``dim`` (MAP: mean BCE + Gaussian priors),
    select its epoch and calibrate it on held-out data.

    Rows: every training event (label: click or not, see :func:`calibration_rows`), each with
    ``cfg.n_negatives`` items the user never touched in them (label 0, weight
    ``sampled_negative_weight``), resampled every epoch. Adam with a cosine learning-rate
    schedule; the epoch with the best calibrated held-out log-loss is kept.
    """
    t0 = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    L = cfg.max_history
    real_neg = clicks.has_real_negatives
    rows, calib_split, _ = calibration_rows(seq, cfg, real_neg)
    side = None if seq.item_features is None else torch.from_numpy(np.asarray(seq.item_features, np.float32))
    model = ResponseModel(seq.n_users, seq.n_items, dim, L, model_features(seq, rows, clicks.positive, side),
                          side, cfg.similarity_threshold)

    hist_np, _ = clicks.histories(rows, L)
    users_np, items_np = seq.users[rows], seq.items[rows]
    labels_np = clicks.positive[rows].astype(np.float32)
    w_s = cfg.sampled_negative_weight if cfg.sampled_negative_weight is not None else (0.0 if real_neg else 1.0)
    k = cfg.n_negatives if w_s > 0 else 0
    # repeats: rows whose target item is already in the clicked history
    n_repeat = int((hist_np == items_np[:, None]).any(axis=1).sum())
    fit_repeat = n_repeat >= cfg.min_repeat_events
    if not fit_repeat:
        model.set_repeat_weight(cfg.default_repeat_penalty, trainable=False)

    train_sampler = UntouchedSampler(users_np, items_np, seq.n_items)
    all_sampler = UntouchedSampler(seq.users, seq.items, seq.n_items)
    valid = held_out_pairs(clicks, calib_split, cfg, np.random.default_rng([cfg.seed, 1]), all_sampler)

    users_t, hist_t, items_t = torch.from_numpy(users_np), torch.from_numpy(hist_np), torch.from_numpy(items_np)
    labels_t = torch.from_numpy(labels_np)
    n = len(rows)
    steps_per_epoch = (n + cfg.batch_size - 1) // cfg.batch_size
    col_w = torch.tensor([1.0] + [w_s] * k)
    priors = (cfg.prior_std_user, cfg.prior_std_item, cfg.prior_std_item_context, cfg.prior_std_item_bias,
              cfg.prior_std_features)

    def run_epoch(opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler) -> float:
        model.train()
        perm = torch.from_numpy(rng.permutation(n))
        neg = torch.from_numpy(train_sampler.sample(users_np, k, rng)) if k else torch.zeros((n, 0), dtype=torch.long)
        total = 0.0
        for start in range(0, n, cfg.batch_size):
            idx = perm[start:start + cfg.batch_size]
            cand = torch.cat([items_t[idx, None], neg[idx]], dim=1)
            y = torch.cat([labels_t[idx, None], torch.zeros(len(idx), k)], dim=1)
            z = model(users_t[idx], hist_t[idx], cand)  # one dense item table per step: cheaper than per-gather maps
            # the likelihood sums over every labelled pair of the row, so the priors weigh less
            # when each row carries sampled negatives too
            bce = (F.binary_cross_entropy_with_logits(z, y, reduction="none") * col_w).sum(1).mean()
            loss = bce + model.prior_penalty(*priors) / (2 * n)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(bce.detach()) * len(idx)
        return total / max(n, 1)

    def optimiser(epochs: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
        return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs * steps_per_epoch, 1))

    opt, sched = optimiser(cfg.epochs)
    history_log: list[dict] = []
    best: tuple[float, int, dict | None] = (math.inf, 0, None)
    for epoch in range(cfg.epochs):
        train_bce = run_epoch(opt, sched)
        z_valid = score_pairs(model, valid)
        cal = Calibration.fit(z_valid, valid.labels, kind="temperature")
        v_loss = log_loss(cal.probability(torch.from_numpy(z_valid).double()).numpy(), valid.labels)
        entry = {"dim": dim, "epoch": epoch + 1, "train_bce": round(train_bce, 5), "valid_log_loss": round(v_loss, 5),
                 "valid_auc": _r5(_auc(z_valid, valid.labels))}
        history_log.append(entry)
        if on_epoch is not None:
            on_epoch(epoch + 1, entry)
        if v_loss < best[0] - 1e-5:
            best = (v_loss, epoch + 1, copy.deepcopy(model.state_dict()))
        elif epoch + 1 - best[1] >= cfg.patience:
            break
    if best[2] is not None:
        model.load_state_dict(best[2])
    model.eval()
    z_valid = score_pairs(model, valid)
    calibration = Calibration.fit(z_valid, valid.labels, kind=cfg.calibration)
    warnings = []
    if calibration.kind == "temperature" and calibration.a < 0.05:
        warnings.append(f"calibration slope {calibration.a:.3g}: the model barely ranks held-out clicks above "
                        f"non-clicks, so P(click) is nearly constant (more data or epochs?)")
    info = {
        "warnings": warnings,
        "model": repr(model), "rows": int(n), "sampled_negatives": k, "sampled_negative_weight": w_s,
        "real_negatives": real_neg, "calibration_protocol": valid.protocol,
        "calibration_set": "valid split" if isinstance(calib_split, str) else f"half of a random {cfg.holdout_fraction:g} of train events",
        "calibration_rows": int(len(valid.items)), "dim": dim, "valid_log_loss": round(best[0], 6),
        "best_epoch": best[1], "epochs_run": len(history_log),
        "history": history_log, "repeat_rows": n_repeat, "repeat_penalty_fitted": fit_repeat,
        "satiation_weight": round(float(model.satiation_weight.detach()), 5), "satiation_decay": round(float(model.decay.detach()), 5),
        "repeat_weight": round(float(model.repeat_weight.detach()), 5), "calibration": calibration.to_dict(),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    return FitResult(model=model, calibration=calibration, info=info)


def _r5(x: float) -> float | None:
    return round(x, 5) if math.isfinite(x) else None


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if labels.min() == labels.max():
        return float("nan")
    return float(roc_auc_score(labels, scores))
