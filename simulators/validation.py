"""Validate a fitted simulator on randomly exposed feedback: the metrics of ``seqrec simulator validate``.

A log records what the old system chose to show, and a simulator fitted on it inherits that
bias. A log of *randomly exposed* events (Coat's 16 random items per user, Yahoo! R3's random
set, KuaiRand's random-policy log, ``seqrec data synth --random-exposure``) has none, so it
measures the simulator the way reality would:

* :func:`observed_outcomes` labels the log's events (a ``--positive`` rule, else the
  simulator's negative behaviour names); :func:`exposed_log` maps its raw user / item ids
  through the simulator's dataset's id maps (events of unknown users or items are dropped
  and counted) and groups the events into the (user, item) pairs each user was shown;
* :func:`score_pairs` gives the simulator's P(positive) of every pair, each user at their
  whole logged history in the simulator's dataset (:func:`logged_histories`), one batched
  call per block of users (:func:`pair_blocks`);
* :func:`popularity_probability` is the popularity baseline as a click model: the item's
  logged click count through a Platt map fitted on the simulator's own calibration events
  (so its AUC is the fidelity report's popularity AUC, and it has a log-loss and an ECE);
* :func:`validation_metrics` (AUC, log-loss, ECE, mean prediction, positive rate, n, by
  :func:`~seqrec.simulators.fidelity.click_metrics`) and :func:`policy_ranking`: each policy
  picks one of each user's exposed items; its **unbiased** value is the mean observed outcome
  of the picks (exposure was random), its **simulated** value the simulator's mean P(positive)
  of the same picks; Kendall tau and Spearman between the two say whether the simulator ranks
  policies as reality does.

The picks come from the caller: :mod:`seqrec.agents.exposed` runs the baselines and trained
agents (simulators never import agents).

Shapes: ``U`` users of the log, ``P`` (user, item) pairs, ``n`` events; pairs are grouped by
user (``user_ptr (U + 1,)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch

from seqrec.data.positive import PositiveRule
from seqrec.data.prepare import cache_root
from seqrec.data.sequences import SequenceData
from seqrec.data.table import InteractionTable
from seqrec.infra.errors import SeqrecError
from seqrec.simulators.calibration import Calibration, calibration_rows, held_out_pairs
from seqrec.simulators.examples import ClickLog, UntouchedSampler
from seqrec.simulators.fidelity import _r, click_metrics
from seqrec.simulators.simulator import UserSimulator

__all__ = ["ExposedLog", "ValidationConfig", "exposed_log", "logged_histories", "observed_outcomes", "pair_blocks",
           "policy_ranking", "popularity_probability", "score_pairs", "simulator_dataset", "validation_metrics"]

METRIC_KEYS = ("auc", "log_loss", "ece", "mean_prediction", "positive_rate", "n")
"""The metrics of ``validation.json`` (top level for the simulator, under ``baseline`` for popularity)."""


@dataclass(frozen=True)
class ValidationConfig:
    """Options of ``seqrec simulator validate``."""

    seed: int = 0
    """Seeds the random policy's picks and the popularity baseline's calibration pairs."""
    block_users: int = 512
    """Users scored (and policies run) per batched call."""


@dataclass(frozen=True)
class ExposedLog:
    """A randomly exposed log in the simulator's ids, grouped into (user, item) pairs.

    :param users: internal ids of the log's known users, sorted, ``(U,)``.
    :param user_ptr: pairs of user ``k`` are ``user_ptr[k]:user_ptr[k + 1]``, ``(U + 1,)``.
    :param items: internal item id of each pair, ``(P,)``.
    :param outcome: mean observed outcome (share of positive events) of each pair, ``(P,)``.
    :param event_pair: the pair of each kept event, ``(n,)``.
    :param labels: 0/1 outcome of each kept event, ``(n,)``.
    :param counts: events read, dropped (unknown user / unknown item), kept; users; pairs.
    """

    users: np.ndarray
    user_ptr: np.ndarray
    items: np.ndarray
    outcome: np.ndarray
    event_pair: np.ndarray
    labels: np.ndarray
    counts: dict

    @property
    def n_users(self) -> int:
        return len(self.users)


def observed_outcomes(table: InteractionTable, rule: PositiveRule | None, negative_behaviours: tuple[str, ...]) -> np.ndarray:
    """Whether each event of ``table`` is positive, ``(n,)`` bool: ``rule`` when given, else every
    behaviour except the simulator's real-negative names (``SimulatorConfig.negative_behaviours``).

    :raises SeqrecError: (one line) the log has no positive or no negative event: nothing to validate on.
    """
    if rule is not None:
        positive = rule.mask(table)
    else:
        negative = np.isin(np.asarray(table.behaviour_names, dtype=object), list(negative_behaviours))
        positive = ~negative[np.asarray(table.columns["behaviour"], np.int64)]
    how = f"--positive {rule}" if rule is not None else f"behaviours {', '.join(table.behaviour_names)}"
    if positive.all() or not positive.any():
        kind = "positive" if positive.all() else "negative"
        raise SeqrecError(f"{table.source}: every event of the unbiased log is {kind} ({how}); validation needs both "
                          "(pass --positive, e.g. 'value>=4' on ratings)")
    return positive


def _lookup(known: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """Index of each ``raw`` id in ``known`` (-1: unknown); ints compare as ints, anything else as text."""
    known, raw = np.asarray(known), np.asarray(raw)
    if known.dtype.kind in "iu" and raw.dtype.kind in "iu":
        return pd.Index(known.astype(np.int64)).get_indexer(raw.astype(np.int64))
    return pd.Index(known.astype(str)).get_indexer(raw.astype(str))


def exposed_log(table: InteractionTable, positive: np.ndarray, seq: SequenceData) -> ExposedLog:
    """Map ``table``'s events through ``seq``'s id maps and group them into pairs (module docstring).

    :param positive: outcome of each event of ``table``, ``(n_events,)`` bool (:func:`observed_outcomes`).
    :raises SeqrecError: (one line) no event has a user and an item the simulator knows.
    """
    cols = table.columns
    users = _lookup(seq.user_ids, np.asarray(table.user_ids)[np.asarray(cols["user"], np.int64)])
    items = _lookup(seq.item_ids, np.asarray(table.item_ids)[np.asarray(cols["item"], np.int64)])
    keep = (users >= 0) & (items >= 0)
    counts = {"events_read": int(len(keep)), "dropped_unknown_user": int((users < 0).sum()),
              "dropped_unknown_item": int(((users >= 0) & (items < 0)).sum()), "events_kept": int(keep.sum())}
    if not keep.any():
        raise SeqrecError(f"{table.source}: no event of the unbiased log has a user and an item the simulator knows "
                          f"(log: {table.n_users} users, {table.n_items} items; simulator: {seq.n_users} users, {seq.n_items} items, "
                          f"{counts['dropped_unknown_user']} events of unknown users); the ids must be the raw ids of the simulator's log")  # fmt: skip
    key = users[keep].astype(np.int64) * seq.n_items + items[keep]
    pairs, event_pair = np.unique(key, return_inverse=True)
    labels = positive[keep].astype(np.float64)
    outcome = np.bincount(event_pair, weights=labels) / np.bincount(event_pair)
    pair_user = pairs // seq.n_items
    log_users, first = np.unique(pair_user, return_index=True)
    counts.update(users=int(len(log_users)), pairs=int(len(pairs)))
    return ExposedLog(users=log_users, user_ptr=np.r_[first, len(pairs)].astype(np.int64), items=pairs % seq.n_items,
                      outcome=outcome, event_pair=event_pair.astype(np.int64), labels=labels, counts=counts)  # fmt: skip


def pair_blocks(log: ExposedLog, block_users: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Blocks of users with their exposed pairs as padded matrices, users sorted by pair count
    (so a block pads little).

    :return: per block ``rows (B,)`` (indices into ``log.users``), ``idx (B, K)`` flat pair
        positions (padding repeats the row's first pair, so a pick is always a real pair) and
        ``valid (B, K)`` bool.
    """
    counts = np.diff(log.user_ptr)
    order = np.argsort(counts, kind="stable")
    for s in range(0, len(order), max(int(block_users), 1)):
        rows = order[s:s + block_users]
        col = np.arange(int(counts[rows].max()))
        valid = col[None, :] < counts[rows][:, None]
        yield rows, log.user_ptr[rows][:, None] + np.where(valid, col[None, :], 0), valid


def logged_histories(sim: UserSimulator, seq: SequenceData, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each user's last ``sim.max_history`` clicks over their whole log (every split), and their
    behaviours, ``(n, L)`` each: the state the user is validated (and the policies pick) at."""
    return ClickLog.build(seq, sim.config.negative_behaviours).user_histories(users, sim.max_history, upto="test")


def score_pairs(sim: UserSimulator, seq: SequenceData, log: ExposedLog, block_users: int = ValidationConfig.block_users) -> np.ndarray:
    """The simulator's P(positive) of every pair of ``log``, ``(P,)``: one batched call per block of users."""
    hist, beh = logged_histories(sim, seq, log.users)
    p = np.empty(len(log.items))
    for rows, idx, valid in pair_blocks(log, block_users):
        state = sim.initial_state(torch.from_numpy(log.users[rows]), torch.from_numpy(hist[rows]), torch.from_numpy(beh[rows]))
        q = sim.click_probability(state, torch.from_numpy(log.items[idx])).cpu().numpy()
        p[idx[valid]] = q[valid]
    return p


def popularity_probability(sim: UserSimulator, seq: SequenceData, seed: int = ValidationConfig.seed) -> np.ndarray:
    """The popularity baseline's P(positive) of every item, ``(n_items,)``.

    Score: ``log(1 + clicks)`` of the item in the simulator's training events (the fidelity
    report's popularity baseline), mapped to a probability by :class:`Calibration` fitted on the
    simulator's own calibration events (their labels; on a log without real negatives, sampled
    never-touched items, then the simulator's base click rate when it has one), as the
    simulator's response model was: a monotone map, so the ranking, and the AUC, are popularity's.
    """
    cfg = sim.config
    clicks = ClickLog.build(seq, cfg.negative_behaviours)
    fit_rows, calibration_split, _ = calibration_rows(seq, cfg, clicks.has_real_negatives)
    clicked = fit_rows[clicks.positive[fit_rows]]
    z = np.log1p(np.bincount(seq.items[clicked], minlength=seq.n_items).astype(np.float64))
    pairs = held_out_pairs(clicks, calibration_split, cfg, np.random.default_rng([seed, 31]),
                           UntouchedSampler(seq.users, seq.items, seq.n_items))
    if not 0 < pairs.labels.sum() < len(pairs.labels):
        return np.full(seq.n_items, float(pairs.labels.mean()) if len(pairs.labels) else 0.5)
    cal = Calibration.fit(z[pairs.items], pairs.labels)
    if not clicks.has_real_negatives and cfg.base_click_rate is not None:
        cal = cal.with_base_rate(z[pairs.items[pairs.labels == 0]], cfg.base_click_rate)
    return cal.probability(torch.from_numpy(z)).numpy()


def validation_metrics(p: np.ndarray, y: np.ndarray) -> tuple[dict, dict]:
    """The :data:`METRIC_KEYS` of predictions ``p (n,)`` against outcomes ``y (n,)``, and the
    reliability table (ECE bins) for the diagram."""
    m = click_metrics(p, y)
    return {k: m[k] for k in METRIC_KEYS}, m["reliability"]


def policy_ranking(picks: dict[str, np.ndarray], p_pairs: np.ndarray, outcome: np.ndarray) -> dict:
    """Simulated vs unbiased value of each policy, and how alike the two rankings are.

    :param picks: per policy, the flat pair picked for each user of the log, ``(U,)``.
    :param p_pairs: the simulator's P(positive) of each pair, ``(P,)``; ``outcome`` the observed one.
    :return: ``{"policies": {name: {"simulated", "unbiased"}}, "kendall_tau", "spearman"}``
        (the correlations are None with fewer than two policies or constant values).
    """
    from scipy.stats import kendalltau, spearmanr

    values = {name: (float(p_pairs[pick].mean()), float(outcome[pick].mean())) for name, pick in picks.items()}
    sim_v, true_v = (np.array([v[i] for v in values.values()]) for i in (0, 1))
    tau = rho = None
    if len(values) >= 2 and np.ptp(sim_v) > 0 and np.ptp(true_v) > 0:
        tau, rho = _r(kendalltau(sim_v, true_v)[0], 4), _r(spearmanr(sim_v, true_v)[0], 4)
    return {"policies": {name: {"simulated": _r(s), "unbiased": _r(t)} for name, (s, t) in values.items()},
            "kendall_tau": tau, "spearman": rho}


def simulator_dataset(sim: UserSimulator, where: Path) -> SequenceData:
    """The prepared dataset a simulator folder's checkpoint was fitted on (from the dataset cache).

    :raises SeqrecError: (one line) the cache no longer holds it.
    """
    entry = cache_root() / "datasets" / str(sim.dataset_key)
    if sim.dataset_key is None or not (entry / "sequences.json").exists():
        source = sim.info.get("dataset", {}).get("source")
        raise SeqrecError(f"{where}: the simulator's prepared dataset {sim.dataset_key} is not in the cache ({entry.parent}); "
                          f"re-run `seqrec simulator fit {source or 'DATA'} --out {where}` or validate a bundle instead")
    return SequenceData.load(entry)
