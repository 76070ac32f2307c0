"""Fitting the click model: maximum a posteriori over the log, an embedding-size search, and calibration.

:func:`fit_response_model` fits :class:`~seqrec.simulators.response.ResponseModel` for each
embedding size in ``SimulatorConfig.dims`` and keeps the best. Each fit
(:func:`fit_response_model_dim`) is maximum a posteriori -- summed binary cross-entropy over
each row's labelled pairs (the logged item, plus sampled never-touched items for logs
without real negatives) plus Gaussian priors on the embeddings -- with Adam and a cosine
schedule, keeping the epoch with the best calibrated held-out log-loss; the held-out data
and the calibration map are in :mod:`seqrec.simulators.calibration`. ``SimulatorConfig.debias``
weights the logged pairs (and the held-out impressions) by inverse exposure propensities
(:mod:`seqrec.simulators.exposure`).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from seqrec.data.sequences import SequenceData
from seqrec.infra.budget import PROBE_STEPS, EpochBudget
from seqrec.infra.devices import resolve_device
from seqrec.simulators.calibration import Calibration, HeldOut, calibration_rows, held_out_pairs
from seqrec.simulators.config import SimulatorConfig
from seqrec.simulators.examples import ClickLog, UntouchedSampler
from seqrec.simulators.exposure import DebiasWeights, batch_weights, debias_warnings, debias_weights, uniform_click_rate
from seqrec.simulators.response import ResponseModel

__all__ = ["FitResult", "fit_response_model", "fit_response_model_dim", "model_features", "score_pairs"]


@torch.no_grad()
def score_pairs(model: ResponseModel, data: HeldOut, batch: int = 4096) -> np.ndarray:
    """Raw logits of held-out pairs, shape (n,)."""
    model.eval()
    out = []
    tables = model.item_table()
    device = tables.b.device
    for s in range(0, len(data.items), batch):
        sl = slice(s, s + batch)
        z = model(torch.from_numpy(data.users[sl]).to(device), torch.from_numpy(data.history[sl]).to(device),
                  torch.from_numpy(data.items[sl])[:, None].to(device), tables=tables)
        out.append(z[:, 0].cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def log_loss(p: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Mean binary log-loss of ``p (n,)`` against 0/1 ``y (n,)``, ``weights (n,)``-weighted when given."""
    p = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
    ll = y * np.log(p) + (1 - y) * np.log(1 - p)
    return float(-np.mean(ll)) if weights is None else float(-np.sum(ll * weights) / np.sum(weights))


def model_features(seq: SequenceData, rows: np.ndarray, positive: np.ndarray, side: Tensor | None) -> tuple[Tensor, np.ndarray]:
    """Item inputs of the response model and their leave-one-out change for each training row.

    :return: ``features (M, F + 1 or 2)``: the side features, plus standardised
        ``log(1 + count)`` of the item's training events (exposures) and, for logs with real
        negatives, of its training clicks -- item popularity, the strongest generic CTR
        feature; and ``loo (n_rows, F + 1 or 2)``: how each training row's own item's
        inputs change when that row is left out of the counts (0 on the side features).
        Without it, a rare item's count holds the label of the very row being fitted -- on a
        50k-item log (2 events per item) the model learned the label from its own feature
        and fell below the popularity baseline on held-out pairs.
    """
    items = seq.items[rows]
    counts = [np.bincount(items, minlength=seq.n_items)]
    own = [np.ones(len(rows))]  # every row counts once among its item's exposures
    if not positive[rows].all():
        counts.append(np.bincount(items[positive[rows]], minlength=seq.n_items))
        own.append(positive[rows].astype(np.float64))
    raw = np.log1p(np.stack(counts, axis=1).astype(np.float64))
    mean, scale = raw.mean(0), np.maximum(raw.std(0), 1e-6)
    c = np.stack(counts, axis=1)[items].astype(np.float64)
    loo = (np.log1p(c - np.stack(own, axis=1)) - np.log1p(c)) / scale
    pop_t = torch.from_numpy(((raw - mean) / scale).astype(np.float32))
    n_side = 0 if side is None else side.shape[1]
    loo = np.concatenate([np.zeros((len(rows), n_side)), loo], axis=1).astype(np.float32)
    return (pop_t if side is None else torch.cat([side, pop_t], dim=1)), loo


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
    deadline = None if cfg.max_seconds is None else time.perf_counter() + cfg.max_seconds
    for i, dim in enumerate(cfg.dims):
        share = None if deadline is None else max(1e-3, (deadline - time.perf_counter()) / (len(cfg.dims) - i))
        fit = fit_response_model_dim(seq, clicks, cfg, dim, on_epoch, max_seconds=share)
        scores.append({"dim": dim, "valid_log_loss": fit.info["valid_log_loss"], "best_epoch": fit.info["best_epoch"],
                       "seconds": fit.info["seconds"]})
        if best is None or fit.info["valid_log_loss"] < best.info["valid_log_loss"]:
            best = fit
    assert best is not None
    best.info["dim_search"] = scores
    best.info["seconds"] = round(sum(s["seconds"] for s in scores), 2)
    return best


def fit_response_model_dim(seq: SequenceData, clicks: ClickLog, cfg: SimulatorConfig, dim: int,
                           on_epoch: Callable[[int, dict], None] | None = None, max_seconds: float | None = None) -> FitResult:
    """Train the response model with embedding size ``dim`` (MAP: mean BCE + Gaussian priors),
    select its epoch and calibrate it on held-out data, within ``max_seconds`` from the call
    (setup and calibration included; None: ``cfg.max_seconds``).

    Rows: every training event (label: click or not, see :func:`calibration_rows`), each with
    ``cfg.n_negatives`` items the user never touched in them (label 0, weight
    ``sampled_negative_weight``), resampled every epoch. Adam with a cosine learning-rate
    schedule; the epoch with the best calibrated held-out log-loss is kept. With
    ``cfg.debias`` the logged pair of each row, and each held-out impression, carries its
    IPS weight (:mod:`seqrec.simulators.exposure`); ``none`` runs exactly the unweighted fit.
    """
    t0 = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    L = cfg.max_history
    real_neg = clicks.has_real_negatives
    rows, calib_split, eval_split = calibration_rows(seq, cfg, real_neg)
    debias = debias_weights(seq, rows, cfg.debias, cfg.debias_max_weight)
    side = None if seq.item_features is None else torch.from_numpy(np.array(seq.item_features, np.float32))  # a copy: the cache is read-only
    item_has_id = torch.from_numpy(np.bincount(seq.items[rows], minlength=seq.n_items) >= cfg.min_id_events)
    user_has_id = torch.from_numpy(np.bincount(seq.users[rows], minlength=seq.n_users) >= cfg.min_id_events)
    features, loo_np = model_features(seq, rows, clicks.positive, side)
    model = ResponseModel(seq.n_users, seq.n_items, dim, L, features, side, cfg.similarity_threshold, item_has_id, user_has_id)
    device = resolve_device(cfg.device)
    loo_t = torch.from_numpy(loo_np)

    users_np, items_np = seq.users[rows], seq.items[rows]
    labels_np = clicks.positive[rows].astype(np.float32)
    w_s = cfg.sampled_negative_weight if cfg.sampled_negative_weight is not None else (0.0 if real_neg else 1.0)
    k = cfg.n_negatives if w_s > 0 else 0
    n_repeat = count_repeats(clicks, rows, L)
    fit_repeat = n_repeat >= cfg.min_repeat_events
    if not fit_repeat:
        model.set_repeat_weight(cfg.default_repeat_penalty, trainable=False)
    model.to(device)

    train_sampler = UntouchedSampler(users_np, items_np, seq.n_items)
    all_sampler = UntouchedSampler(seq.users, seq.items, seq.n_items)
    valid = held_out_pairs(clicks, calib_split, cfg, np.random.default_rng([cfg.seed, 1]), all_sampler)
    valid_w = _held_out_weights(debias, valid, calib_split)
    row_w = None if debias is None else torch.from_numpy(np.ascontiguousarray(debias.events[rows]))

    users_t, items_t = torch.from_numpy(users_np), torch.from_numpy(items_np)
    labels_t = torch.from_numpy(labels_np)
    n = len(rows)
    max_seconds = cfg.max_seconds if max_seconds is None else max_seconds
    budget = EpochBudget(n, cfg.batch_size, max_seconds, cfg.examples_per_epoch, start=t0)  # setup counts too
    t_valid = time.perf_counter()
    score_pairs(model, valid)  # timed once: the per-epoch overhead a budget plans for
    valid_seconds = time.perf_counter() - t_valid
    budget.reserve(valid_seconds)  # the final calibration scores the held-out pairs once more
    col_w = torch.tensor([1.0] + [w_s] * k, device=device)
    priors = (cfg.prior_std_user, cfg.prior_std_item, cfg.prior_std_item_context, cfg.prior_std_item_bias,
              cfg.prior_std_features)

    def run_epoch(opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.CosineAnnealingLR) -> float:
        model.train()
        t0 = time.perf_counter()
        perm = rng.permutation(n)
        total, seen, b = 0.0, 0, 0
        while b < budget.steps():  # histories and negatives per batch: memory of a batch, not of the log
            idx_np = perm[b * cfg.batch_size:min((b + 1) * cfg.batch_size, budget.limit)]
            idx = torch.from_numpy(idx_np)
            neg = torch.from_numpy(train_sampler.sample(users_np[idx_np], k, rng)) if k else torch.zeros((len(idx), 0), dtype=torch.long)
            hist = torch.from_numpy(clicks.histories(rows[idx_np], L)[0])
            cand = torch.cat([items_t[idx, None], neg], dim=1).to(device)
            y = torch.cat([labels_t[idx, None], torch.zeros(len(idx), k)], dim=1).to(device)
            delta = torch.zeros(len(idx), k + 1, loo_t.shape[1])
            delta[:, 0] = loo_t[idx]  # the logged item's popularity without this very row
            z = model(users_t[idx].to(device), hist.to(device), cand, feature_delta=delta.to(device))  # one dense item table per step: cheaper than per-gather maps
            # the likelihood sums over every labelled pair of the row, so the priors weigh less
            # when each row carries sampled negatives too
            if row_w is None:
                bce = (F.binary_cross_entropy_with_logits(z, y, reduction="none") * col_w).sum(1).mean()
            else:  # the logged pair weighs its (batch-normalised for snips) IPS weight, sampled negatives w_s
                per = F.binary_cross_entropy_with_logits(z, y, reduction="none") * col_w
                bce = (per[:, 0] * batch_weights(row_w[idx], debias.method).to(device) + per[:, 1:].sum(1)).mean()
            loss = bce + model.prior_penalty(*priors) / (2 * n)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(bce.detach()) * len(idx)
            seen += len(idx)
            b += 1
            if not budget.probed and b == PROBE_STEPS:
                budget.probe(time.perf_counter() - t0, b, valid_seconds)
                sched.T_max = max(budget.planned_epochs(cfg.epochs) * budget.steps(), 1)  # the cosine spans the planned steps
            if budget.exhausted():  # end the epoch here: validate, keep the best, stop
                break
        return total / max(seen, 1)

    def optimiser(epochs: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.CosineAnnealingLR]:
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
        return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs * budget.steps(), 1))

    opt, sched = optimiser(cfg.epochs)
    history_log: list[dict] = []
    best: tuple[float, int, dict | None] = (math.inf, 0, None)
    for epoch in range(cfg.epochs):
        train_bce = run_epoch(opt, sched)
        z_valid = score_pairs(model, valid)
        cal = Calibration.fit(z_valid, valid.labels, valid_w, kind="temperature")
        v_loss = log_loss(cal.probability(torch.from_numpy(z_valid).double()).numpy(), valid.labels, valid_w)
        entry = {"dim": dim, "epoch": epoch + 1, "train_bce": round(train_bce, 5), "valid_log_loss": round(v_loss, 5),
                 "valid_auc": _r5(_auc(z_valid, valid.labels))}
        history_log.append(entry)
        if on_epoch is not None:
            on_epoch(epoch + 1, entry)
        if v_loss < best[0] - 1e-5:
            best = (v_loss, epoch + 1, copy.deepcopy(model.state_dict()))
        elif epoch + 1 - best[1] >= cfg.patience:
            break
        if budget.exhausted():
            break
    if best[2] is not None:
        model.load_state_dict(best[2])
    model.cpu().eval()  # the simulator is built on the CPU (UserSimulator.to moves it)
    z_valid = score_pairs(model, valid)
    level = None
    if valid_w is None:
        calibration = Calibration.fit(z_valid, valid.labels, None, kind=cfg.calibration)
    else:  # debiased, with impressions: the whole holdout calibrates, every train-split event sets the level
        held_rows = np.sort(np.concatenate([calib_split, eval_split]))
        held = held_out_pairs(clicks, held_rows, cfg, np.random.default_rng([cfg.seed, 1]), all_sampler)
        calibration = Calibration.fit(score_pairs(model, held), held.labels, _held_out_weights(debias, held, held_rows, clipped=False),
                                      kind=cfg.calibration)
        level_rows = np.concatenate([rows, held_rows])
        calibration, level = uniform_level(model, calibration, clicks.positive[level_rows], debias.unclipped[level_rows], held,
                                           seq.n_items, np.random.default_rng([cfg.seed, 3]))
    if not real_neg and cfg.base_click_rate is not None:  # the log cannot say how often a random item is taken
        calibration = calibration.with_base_rate(z_valid[valid.labels == 0], cfg.base_click_rate)
    warnings = []
    if calibration.kind == "temperature" and calibration.a < 0.05:
        warnings.append(f"calibration slope {calibration.a:.3g}: the model barely ranks held-out clicks above "
                        f"non-clicks, so P(click) is nearly constant (more data or epochs?)")
    debias_record = {"method": "none"} if debias is None else {**debias.record, "calibration_weighted": valid_w is not None,
                                                                     "calibration_weights": "unclipped" if valid_w is not None else None,
                                                                     "level": level}
    warnings += debias_warnings(debias_record)
    info = {
        "warnings": warnings,
        "model": repr(model), "rows": int(n), "budget": budget.to_dict(), "sampled_negatives": k, "sampled_negative_weight": w_s,
        "real_negatives": real_neg, "calibration_protocol": valid.protocol, "debias": debias_record,
        "calibration_set": _calibration_set(calib_split, cfg.holdout_fraction, level is not None),
        "calibration_rows": int(len(valid.items)), "dim": dim, "base_click_rate": _base_rate_source(cfg, real_neg),
        "valid_log_loss": round(best[0], 6),
        "best_epoch": best[1], "epochs_run": len(history_log),
        "history": history_log, "repeat_rows": n_repeat, "repeat_penalty_fitted": fit_repeat,
        "satiation_weight": round(float(model.satiation_weight.detach()), 5), "satiation_decay": round(float(model.decay.detach()), 5),
        "repeat_weight": round(float(model.repeat_weight.detach()), 5), "calibration": calibration.to_dict(),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    return FitResult(model=model, calibration=calibration, info=info)


UNIFORM_PAIRS = 50_000
"""Most (calibration state, uniformly drawn item) pairs that :func:`uniform_level` scores."""


def uniform_level(model: ResponseModel, calibration: Calibration, labels: np.ndarray, weights: np.ndarray, held: HeldOut,
                  n_items: int, rng: np.random.Generator) -> tuple[Calibration, dict]:
    """``calibration`` shifted so that the mean P(click) of uniformly drawn items at the held-out
    states equals the IPS click rate of ``labels (n,)`` under unclipped ``weights (n,)``
    (:func:`~seqrec.simulators.exposure.uniform_click_rate`: why, in that module's docstring).

    :param held: the calibration pairs; up to :data:`UNIFORM_PAIRS` of their states, drawn with
        replacement, each get one item drawn uniformly from the ``n_items`` of the catalogue.
    :return: the shifted calibration and its record (``fidelity.json`` → ``debias.level``).
    """
    rate = uniform_click_rate(labels, weights)
    idx = rng.integers(len(held.items), size=min(UNIFORM_PAIRS, 4 * len(held.items)))
    pairs = HeldOut(held.users[idx], held.history[idx], rng.integers(n_items, size=len(idx)), np.zeros(len(idx), np.float32), held.protocol)
    z = score_pairs(model, pairs)
    before = float(calibration.probability(torch.from_numpy(z).double()).mean())
    shifted = calibration.with_base_rate(z, rate)
    return shifted, {"uniform_click_rate": round(rate, 6), "events": int(len(labels)), "uniform_pairs": int(len(idx)),
                     "mean_before": round(before, 6), "shift": round(float(shifted.shift), 6)}


def _calibration_set(calib_split: str | np.ndarray, holdout_fraction: float, debiased: bool) -> str:
    """Which events the final calibration was fitted on (``fidelity.json``)."""
    if isinstance(calib_split, str):
        return "valid split"
    if debiased:
        return f"a random {holdout_fraction:g} of train events, both halves (their weights leave few effective events)"
    return f"half of a random {holdout_fraction:g} of train events"


def _held_out_weights(debias: DebiasWeights | None, valid: HeldOut, calib_split: str | np.ndarray,
                      clipped: bool = True) -> np.ndarray | None:
    """IPS weights of the held-out calibration pairs ``(n,)``: those of their events under the
    ``impressions`` protocol (one pair per event, in ``calib_split`` order), clipped (epoch
    selection) or not (the final calibration: :class:`~seqrec.simulators.exposure.DebiasWeights`);
    None without debiasing or under the ``sampled`` protocol, whose level ``base_click_rate`` sets."""
    if debias is None or valid.protocol != "impressions" or isinstance(calib_split, str):
        return None
    return (debias.events if clipped else debias.unclipped)[np.asarray(calib_split, np.int64)].astype(np.float64)


def count_repeats(clicks: ClickLog, rows: np.ndarray, max_len: int, chunk: int = 1 << 16) -> int:
    """Rows whose target item is already among their last ``max_len`` clicks (in chunks: the
    histories of every row at once would take ``8 * max_len`` bytes per event)."""
    items = clicks.seq.items
    return sum(int((clicks.histories(rows[s:s + chunk], max_len)[0] == items[rows[s:s + chunk], None]).any(axis=1).sum())
               for s in range(0, len(rows), chunk))


def _base_rate_source(cfg: SimulatorConfig, real_negatives: bool) -> dict:
    """Where the simulator's base click rate comes from (see ``SimulatorConfig.base_click_rate``)."""
    if real_negatives:
        return {"value": None, "source": "learned from the log's impressions"}
    if cfg.base_click_rate is None:
        return {"value": round(1 / (1 + cfg.eval_negatives), 5), "source": f"the 1:{cfg.eval_negatives} calibration protocol (about)"}
    return {"value": cfg.base_click_rate, "source": "set by SimulatorConfig.base_click_rate: a log without impressions cannot identify it"}


def _r5(x: float) -> float | None:
    return round(x, 5) if math.isfinite(x) else None


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if labels.min() == labels.max():
        return float("nan")
    return float(roc_auc_score(labels, scores))
