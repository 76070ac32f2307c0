"""How faithful a fitted simulator is to its log (and, for the synthetic default, to the truth).

:func:`fidelity_report` writes ``fidelity.json`` and PNG plots
(:mod:`seqrec.simulators.fidelity_plots`) into a folder:

* **click model, held out** -- AUC, log-loss and expected calibration error (ECE, 15
  equal-width bins). Protocol ``sampled``: each test-split positive against
  ``eval_negatives`` items the user never touched. Protocol ``impressions`` (logs with real
  negatives): logged shown items with their click labels, on the random held-out train
  events not used for calibration (the headline), and on the test split (whose last events
  are selected by the outcome, see :class:`SimulatorConfig.holdout_fraction`).
  ``reliability.png`` is the reliability diagram of the headline protocol. Beside it, the
  popularity baseline's AUC on the same pairs (overall and per positive behaviour), the
  spread of the simulated P(click), the base click rate and where it comes from, and
  ``weak_simulator``: the reasons it cannot tell policies apart
  (:mod:`seqrec.simulators.fidelity_checks`).
* **replay** -- logged sessions replayed in the simulator: the policy shows the user's
  logged items in their logged order from the session start, until the simulated user
  leaves (or the user's log runs out: *censored*). Compared with the same logged sessions:
  click rate, Jensen-Shannon divergence (base 2: 0 identical, 1 disjoint) of the clicked
  items' distribution over items, over popularity deciles and over categories (side
  features), and of the session lengths. Plots ``popularity.png``, ``categories.png``,
  ``session_lengths.png``.
* **ground truth** (when ``truth`` is given) -- Spearman correlation between the fitted
  and the true P(click) over random (history, item) pairs (histories: clicked-item
  prefixes at random logged events; items uniform over the catalogue) and between the
  fitted and true exit probability over logged states; ``truth.png`` scatters them. On a log
  without impressions also ``spearman_click_ceiling``: the Spearman that a *perfect* model
  of that log would reach. Such a log identifies only which item comes next,
  P(next click = i | h) = pi0(i | h) P(click | h, i) / Z(h), the logging policy's exposure
  times the click probability (:func:`identified_ceiling`), not P(click | shown) itself.
* **debias** -- how the response model was corrected for the logging policy's exposure
  (``SimulatorConfig.debias``, :mod:`seqrec.simulators.exposure`): the method, whether the
  propensities are the log's ``pscore`` or estimated from the log itself by the exposure
  model, the weight clip, the share of training rows clipped and the effective sample size.
  The held-out metrics above are on logged impressions, which carry the logging policy's
  bias; ``seqrec simulator validate`` scores a simulator on randomly exposed feedback.
* **throughput** -- simulator steps per second for a batch of 64 users.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from seqrec.infra.atomic import write_json_atomic
from seqrec.data.sequences import SequenceData
from seqrec.simulators.calibration import HeldOut, calibration_rows, held_out_pairs
from seqrec.simulators.dynamics import session_steps
from seqrec.simulators.examples import ClickLog, UntouchedSampler
from seqrec.simulators.fidelity_checks import popularity_comparison, probability_spread, protocol_view, weak_simulator_problems
from seqrec.simulators.fidelity_plots import write_plots
from seqrec.simulators.simulator import UserSimulator

ECE_BINS = 15


# ---------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------


def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> tuple[float, dict]:
    """ECE over equal-width probability bins, and the per-bin table (for the reliability diagram)."""
    p, y = np.asarray(p, np.float64), np.asarray(y, np.float64)
    idx = np.minimum((p * bins).astype(np.int64), bins - 1)
    n = np.bincount(idx, minlength=bins)
    conf = np.bincount(idx, weights=p, minlength=bins) / np.maximum(n, 1)
    freq = np.bincount(idx, weights=y, minlength=bins) / np.maximum(n, 1)
    ece = float(np.sum(n * np.abs(conf - freq)) / max(len(p), 1))
    return ece, {"count": n.tolist(), "confidence": conf.round(5).tolist(), "frequency": freq.round(5).tolist()}


def js_divergence(a: np.ndarray, b: np.ndarray) -> float:
    """Jensen-Shannon divergence (base 2) between two histograms (normalised here)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.sum() <= 0 or b.sum() <= 0:
        return float("nan")
    a, b = a / a.sum(), b / b.sum()
    m = (a + b) / 2

    def kl(x: np.ndarray) -> float:
        nz = x > 0
        return float(np.sum(x[nz] * np.log2(x[nz] / m[nz])))

    return float(max(0.5 * kl(a) + 0.5 * kl(b), 0.0))


def click_metrics(p: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """AUC, log-loss, ECE, base rate and mean prediction of held-out pairs."""
    from sklearn.metrics import roc_auc_score

    p = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
    y = np.asarray(y, np.float64)
    ece, table = expected_calibration_error(p, y)
    auc = float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")
    ll = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return {"auc": _r(auc), "log_loss": _r(ll), "ece": _r(ece), "n": int(len(y)), "positive_rate": _r(y.mean()),
            "mean_prediction": _r(p.mean()), "reliability": table}


def _r(x: float, nd: int = 5) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else round(float(x), nd)


def _predict(sim: UserSimulator, data: HeldOut, batch: int = 4096) -> np.ndarray:
    out = []
    for s in range(0, len(data.items), batch):
        sl = slice(s, s + batch)
        st = sim.initial_state(torch.from_numpy(data.users[sl]), torch.from_numpy(data.history[sl]))
        out.append(sim.click_probability(st, torch.from_numpy(data.items[sl])).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


# ---------------------------------------------------------------------------------------
# replay
# ---------------------------------------------------------------------------------------


def replay_sessions(sim: UserSimulator, seq: SequenceData, clicks: ClickLog, n_sessions: int, max_steps: int,
                    seed: int) -> dict[str, np.ndarray]:
    """Replay logged sessions in the simulator (see the module docstring); batched over sessions.

    :return: ``sim_length``, ``log_length``, ``censored`` (n,), ``sim_items`` (clicked items),
        ``log_items`` (positive items of the logged sessions), ``sim_steps``, ``sim_clicks``,
        ``log_steps``, ``log_clicks`` (totals over the replayed steps / logged sessions).
    """
    facts = session_steps(seq, clicks.positive, sim.config.session_gap_s, sim.config.max_misses)
    sess = facts["session"]
    starts = np.flatnonzero(np.r_[True, sess[1:] != sess[:-1]])
    lengths = np.diff(np.r_[starts, seq.n_events])
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(starts), size=min(n_sessions, len(starts)), replace=False))
    s0, log_len = starts[pick], lengths[pick]
    users = seq.users[s0]
    u_end = seq.user_ptr[users + 1]
    hist, beh = clicks.histories(s0, sim.max_history)
    dev = sim.device
    state = sim.initial_state(torch.from_numpy(users), torch.from_numpy(hist), torch.from_numpy(beh))
    g = torch.Generator(device=dev).manual_seed(seed)
    n = len(s0)
    active = np.ones(n, bool)
    sim_len = np.zeros(n, np.int64)
    censored = np.zeros(n, bool)
    sim_items: list[np.ndarray] = []
    steps = n_clicks = 0
    for t in range(max_steps):
        pos = s0 + t
        runs_out = active & (pos >= u_end)
        censored |= runs_out
        active &= ~runs_out
        if not active.any():
            break
        items = seq.items[np.minimum(pos, u_end - 1)]
        res = sim.step(state, torch.from_numpy(items).to(dev), g)
        state = res.state
        clicked = res.clicks.cpu().numpy() > 0
        left = res.left.cpu().numpy()
        sim_items.append(items[active & clicked])
        steps += int(active.sum())
        n_clicks += int((active & clicked).sum())
        sim_len += active
        active &= ~left
    censored |= active
    in_log = np.repeat(s0, log_len) + (np.arange(log_len.sum()) - np.repeat(np.cumsum(log_len) - log_len, log_len))
    log_pos = in_log[clicks.positive[in_log]]
    return {"sim_length": sim_len, "log_length": log_len, "censored": censored,
            "sim_items": np.concatenate(sim_items) if sim_items else np.zeros(0, np.int64),
            "log_items": seq.items[log_pos], "sim_steps": np.asarray(steps), "sim_clicks": np.asarray(n_clicks),
            "log_steps": np.asarray(int(log_len.sum())), "log_clicks": np.asarray(int(len(log_pos)))}


def _category_mass(seq: SequenceData, items: np.ndarray) -> np.ndarray | None:
    if seq.item_features is None or not len(seq.item_feature_names):
        return None
    f = np.asarray(seq.item_features, np.float64)
    f = f / np.maximum(f.sum(1, keepdims=True), 1e-12)
    return f[items].sum(0) if len(items) else np.zeros(f.shape[1])


# ---------------------------------------------------------------------------------------
# throughput
# ---------------------------------------------------------------------------------------


def step_throughput(sim: UserSimulator, seq: SequenceData, batch: int = 64, steps: int = 300, slate: int = 0,
                    seed: int = 0) -> float:
    """Simulator steps per second (one step = the whole batch) for random users and items."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, seq.n_users, batch)
    clicks = ClickLog.build(seq, sim.config.negative_behaviours)
    hist, beh = clicks.user_histories(users, sim.max_history, upto="valid")
    dev = sim.device
    state = sim.initial_state(torch.from_numpy(users), torch.from_numpy(hist), torch.from_numpy(beh))
    shape = (steps, batch, slate) if slate else (steps, batch)
    items = torch.from_numpy(rng.integers(0, seq.n_items, shape)).to(dev)
    g = torch.Generator(device=dev).manual_seed(seed)
    for t in range(10):  # warm-up
        sim.step(state, items[t], g)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for t in range(steps):
        state = sim.step(state, items[t], g).state
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------


def fidelity_report(sim: UserSimulator, seq: SequenceData, out_dir: str | Path | None, truth: Any = None, *,
                    n_replay: int = 1000, max_replay_steps: int = 300, n_truth_pairs: int = 5000, seed: int = 0,
                    on_stage: Callable[[str], None] | None = None, extra: dict | None = None) -> dict:
    """Compute the fidelity report (module docstring); write ``fidelity.json`` and PNGs into ``out_dir``.

    :param sim: a simulator fitted on ``seq`` (its ``dataset_key`` should be ``seq.meta["key"]``).
    :param truth: the synthetic :class:`~seqrec.data.ground_truth.GroundTruth`, for the ground-truth check.
    :param on_stage: called with the name of each stage as it starts (progress display).
    :param extra: more top-level entries for the report (e.g. the command that made it).
    :return: the report (what ``fidelity.json`` holds).
    """
    stage = on_stage or (lambda name: None)
    cfg = sim.config
    clicks = ClickLog.build(seq, cfg.negative_behaviours)
    sampler = UntouchedSampler(seq.users, seq.items, seq.n_items)
    report: dict[str, Any] = {"dataset": {"source": seq.meta.get("source"), "key": seq.meta.get("key"),
                                          "n_users": seq.n_users, "n_items": seq.n_items, "n_events": seq.n_events,
                                          "behaviours": seq.behaviour_names,
                                          "real_negatives": clicks.has_real_negatives},
                              "checkpoint_dataset_key": sim.dataset_key}

    # -- click model on held-out data ------------------------------------------------------
    stage("held-out click metrics")
    click: dict[str, Any] = {}
    rng = np.random.default_rng(seed + 7)
    protocol_sim = protocol_view(sim)  # calibration metrics against what the protocol identifies
    fit_rows, _, evaluation = calibration_rows(seq, cfg, clicks.has_real_negatives)
    test_sampled = held_out_pairs(clicks, "test", cfg, rng, sampler, protocol="sampled")
    protocol_p = _predict(protocol_sim, test_sampled)
    click["test_sampled"] = click_metrics(protocol_p, test_sampled.labels)
    click["test_sampled"]["negatives_per_positive"] = cfg.eval_negatives
    sampled_p = protocol_p if protocol_sim is sim else _predict(sim, test_sampled)  # the simulator's own P(click)
    head_pairs, simulated = test_sampled, sampled_p
    if clicks.has_real_negatives:
        head_pairs = held_out_pairs(clicks, evaluation, cfg, rng, sampler, protocol="impressions")
        simulated = _predict(sim, head_pairs)
        click["heldout_impressions"] = click_metrics(simulated, head_pairs.labels)
        test_imp = held_out_pairs(clicks, "test", cfg, rng, sampler, protocol="impressions")
        click["test_impressions"] = click_metrics(_predict(sim, test_imp), test_imp.labels)
        head = "heldout_impressions"
    else:
        head = "test_sampled"
    click["headline"] = head
    for k in ("auc", "log_loss", "ece"):
        click[k] = click[head][k]
    click["vs_popularity"] = popularity_comparison(head_pairs, simulated, seq, clicks, fit_rows)
    click["popularity_auc"] = click["vs_popularity"]["all"]["popularity_auc"]
    click["p_click"] = probability_spread(simulated)
    random_items = sampled_p[test_sampled.labels == 0]
    click["base_click_rate"] = {**sim.info.get("response", {}).get("base_click_rate", {}),
                                "simulated_mean_random_item": _r(float(np.mean(random_items))) if len(random_items) else None}  # fmt: skip
    report["click_model"] = click
    report["weak_simulator"] = weak_simulator_problems(report)
    report["debias"] = debias_record(sim)

    # -- outcome (behaviour / rating) model -----------------------------------------------
    pos = seq.positions("test")
    pos = pos[clicks.positive[pos]]
    if len(pos):
        probs = sim.outcomes.probabilities(torch.from_numpy(seq.users[pos]).to(sim.device),
                                           torch.from_numpy(seq.items[pos]).to(sim.device)).cpu().numpy()
        ob, ov = sim.outcomes.behaviour.cpu().numpy(), sim.outcomes.value.cpu().numpy()
        match = (seq.behaviours[pos, None] == ob[None, :]) & np.isclose(seq.values[pos, None], ov[None, :])
        hit = match.any(1)
        ll = -np.log(np.clip((probs * match).sum(1)[hit], 1e-9, 1))
        prior = np.bincount(match[hit].argmax(1), minlength=len(ob)) + 1.0
        prior = prior / prior.sum()
        base = -np.log(prior[match[hit].argmax(1)])
        report["outcome_model"] = {"outcomes": sim.info.get("outcomes", {}).get("labels"), "test_positives": int(hit.sum()),
                                   "log_loss": _r(ll.mean()) if hit.any() else None,
                                   "prior_log_loss": _r(base.mean()) if hit.any() else None}

    # -- replay: distributions and session lengths ----------------------------------------
    stage("replaying logged sessions")
    rep = replay_sessions(sim, seq, clicks, n_replay, max_replay_steps, seed)
    pop = seq.item_popularity(("train",))
    sim_hist = np.bincount(rep["sim_items"], minlength=seq.n_items)
    log_hist = np.bincount(rep["log_items"], minlength=seq.n_items)
    rank = np.argsort(np.argsort(-pop, kind="stable"), kind="stable")
    decile = np.minimum(rank * 10 // max(seq.n_items, 1), 9)
    sim_dec = np.bincount(decile[rep["sim_items"]], minlength=10)
    log_dec = np.bincount(decile[rep["log_items"]], minlength=10)
    sim_cat, log_cat = _category_mass(seq, rep["sim_items"]), _category_mass(seq, rep["log_items"])
    cap = int(max(np.percentile(np.r_[rep["sim_length"], rep["log_length"]], 99), 1))
    bins = np.arange(1, cap + 2)
    sim_lh = np.histogram(np.minimum(rep["sim_length"], cap), bins=bins)[0]
    log_lh = np.histogram(np.minimum(rep["log_length"], cap), bins=bins)[0]
    report["replay"] = {
        "policy": "replay the user's logged items in logged order from a logged session start",
        "sessions": int(len(rep["sim_length"])), "censored": int(rep["censored"].sum()),
        "sim_click_rate": _r(rep["sim_clicks"] / max(int(rep["sim_steps"]), 1)),
        "log_click_rate": _r(rep["log_clicks"] / max(int(rep["log_steps"]), 1)),
        "js_items": _r(js_divergence(sim_hist, log_hist)),
        "js_popularity_deciles": _r(js_divergence(sim_dec, log_dec)),
        "js_categories": _r(js_divergence(sim_cat, log_cat)) if sim_cat is not None else None,
        "js_session_length": _r(js_divergence(sim_lh, log_lh)),
        "sim_mean_session_length": _r(rep["sim_length"].mean()),
        "log_mean_session_length": _r(rep["log_length"].mean()),
        "sim_clicks": int(rep["sim_clicks"]), "log_clicks": int(rep["log_clicks"]),
    }
    report["exit_model"] = sim.exit_model.to_dict()

    # -- ground truth ---------------------------------------------------------------------
    scatter = None
    if truth is not None:
        stage("ground-truth check")
        report["ground_truth"], scatter = ground_truth_check(sim, seq, clicks, truth, n_truth_pairs, seed)

    stage("throughput")
    report["throughput"] = {"batch": 64, "steps_per_s": round(step_throughput(sim, seq), 1),
                            "slate_10_steps_per_s": round(step_throughput(sim, seq, slate=10), 1),
                            "device": str(sim.device), "torch_threads": torch.get_num_threads()}
    report["fit"] = {k: v for k, v in sim.info.items() if k != "dataset"}
    report.update(extra or {})

    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        stage("plots")
        write_plots(out, report, click[head]["reliability"], sim_dec, log_dec, sim_cat, log_cat, sim_lh, log_lh, bins,
                    seq.item_feature_names, report.get("ground_truth"), scatter)
        write_json_atomic(out / "fidelity.json", report)
    return report


def debias_record(sim: UserSimulator) -> dict:
    """How the response model was debiased (``SimulatorConfig.debias``, :mod:`seqrec.simulators.exposure`):
    the method, where the propensities came from, the clip and the weights' spread; for a
    checkpoint fitted before the option, its config's method alone."""
    record = sim.info.get("response", {}).get("debias")
    return dict(record) if record else {"method": sim.config.debias}


def truth_pairs(clicks: ClickLog, n_pairs: int, max_len: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The random (history, item) pairs of the ground-truth check.

    Histories are the clicked-item prefixes (internal ids, left-padded with -1) at logged
    events drawn uniformly; items are uniform over the catalogue, so the check covers
    items the log rarely showed in that context, not only the logged ones.

    :return: ``positions (n,)``, ``users (n,)``, ``histories (n, max_len)``, ``items (n,)``.
    """
    seq = clicks.seq
    pos = rng.integers(0, seq.n_events, n_pairs)
    hist, _ = clicks.histories(pos, max_len)
    return pos, seq.users[pos], hist, rng.integers(0, seq.n_items, n_pairs)


def identified_ceiling(truth: Any, users: np.ndarray, raw_hist: np.ndarray, items: np.ndarray, seq: SequenceData,
                       rng: np.random.Generator, n_rows: int = 2000, n_items: int = 256) -> float | None:
    """Spearman(P(next click = i | h), true P(click | h, i)) over the first ``n_rows`` truth pairs.

    A log of clicks alone (no impressions) holds each user's next click, whose probability is
    pi0(i | h) P(click | h, i) / Z(h) with Z(h) = sum_j pi0(j | h) P(click | h, j) over the
    whole catalogue (estimated from ``n_items`` uniform draws, the same for every row): what the logging policy showed
    is part of what the log says. A model that learned that exactly would score this, so it
    is the most a fitted simulator can reach on that log (raw ids: ``raw_hist`` (B, L)).
    """
    from scipy.stats import spearmanr

    n = min(n_rows, len(items))
    u = np.asarray(seq.user_ids)[users[:n]].astype(np.int64)
    h, it = raw_hist[:n], np.asarray(seq.item_ids)[items[:n]].astype(np.int64)
    p = truth.click_probability(u, h, it)
    draws = np.broadcast_to(rng.integers(0, truth.n_items, n_items), (n, n_items))  # the same draws for every row
    z = (truth.click_probability(u, h, draws) * truth.logging_propensity(h, draws, users=u)).mean(1)
    return _r(spearmanr(truth.logging_propensity(h, it, users=u) * p / z, p)[0], 4)


def ground_truth_check(sim: UserSimulator, seq: SequenceData, clicks: ClickLog, truth: Any, n_pairs: int,
                       seed: int) -> tuple[dict, tuple[np.ndarray, np.ndarray]]:
    """Spearman of fitted vs true P(click) and P(exit) (see the module docstring).

    :return: the report section, and ``(fitted, true)`` P(click) of the random pairs (for the plot).
    """
    from scipy.stats import pearsonr, spearmanr

    rng = np.random.default_rng(seed + 11)
    L = min(sim.max_history, int(getattr(truth.config, "history_window", sim.max_history)))
    pos, users, hist, items = truth_pairs(clicks, n_pairs, L, rng)
    fitted = _predict(sim, HeldOut(users, hist, items, np.zeros(n_pairs), "truth"))
    raw_hist = np.where(hist >= 0, np.asarray(seq.item_ids)[np.maximum(hist, 0)], -1).astype(np.int64)
    true = truth.click_probability(np.asarray(seq.user_ids)[users].astype(np.int64), raw_hist,
                                   np.asarray(seq.item_ids)[items].astype(np.int64))
    # the logged (history, shown item) pairs too: the distribution the log identifies best
    logged = seq.items[pos]
    fitted_l = _predict(sim, HeldOut(users, hist, logged, np.zeros(n_pairs), "truth"))
    true_l = truth.click_probability(np.asarray(seq.user_ids)[users].astype(np.int64), raw_hist,
                                     np.asarray(seq.item_ids)[logged].astype(np.int64))
    ceiling = None if clicks.has_real_negatives else identified_ceiling(truth, users, raw_hist, items, seq, np.random.default_rng(seed + 13))
    facts = session_steps(seq, clicks.positive, sim.config.session_gap_s, sim.config.max_misses)
    m = facts["misses"][rng.integers(0, seq.n_events, n_pairs)]
    m = np.concatenate([m, rng.integers(0, 21, n_pairs)])  # and misses 0..20 uniformly
    fe = sim.exit_model.probability(torch.from_numpy(m)).numpy()
    te = truth.exit_probability(m)
    cfgt = truth.config
    return {
        "spearman_click": _r(spearmanr(fitted, true)[0], 4),
        "pearson_click": _r(pearsonr(fitted, true)[0], 4),
        "spearman_click_logged_items": _r(spearmanr(fitted_l, true_l)[0], 4),
        "spearman_click_ceiling": ceiling,
        "mean_fitted_click": _r(fitted.mean()), "mean_true_click": _r(true.mean()),
        "mean_abs_error_click": _r(np.abs(fitted - true).mean()),
        "spearman_exit": _r(spearmanr(fe, te)[0], 4),
        "mean_abs_error_exit": _r(np.abs(fe - te).mean()),
        "exit_fitted": {"intercept": _r(sim.exit_model.intercept, 4), "slope": _r(sim.exit_model.slope, 4)},
        "exit_true": {"intercept": cfgt.exit_intercept, "slope": cfgt.exit_slope},
        "n_pairs": int(n_pairs),
    }, (fitted, true)
