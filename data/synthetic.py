r"""The embedded synthetic dataset: a logged e-commerce stream from a documented user model.

The default ``SeqRec-v0`` environment is built from this dataset, and because every
parameter of the model that produced it is kept (``truth.npz``), a fitted user simulator
can be scored against the *true* click probability, and a policy's true value can be
computed. The model is documented where it is computed: :mod:`seqrec.data.synth_config`
(every knob, and what the defaults give), :mod:`seqrec.data.synth_parameters` (catalogue
and users), :mod:`seqrec.data.ground_truth` (the true click, exit and churn probabilities)
and :mod:`seqrec.data.logging_policy` (which item is shown). This module simulates the
logging platform and writes the files. Everything is vectorised numpy over all users at
once; the only Python loop is over time steps (at most ``max_events_per_user`` iterations).

Randomness: ``np.random.SeedSequence(seed).spawn(3)`` gives independent streams, one
for the ground-truth parameters (so :meth:`GroundTruth.from_config
<seqrec.data.ground_truth.GroundTruth.from_config>` regenerates them without simulating
the log), one for the logging simulation and one for the random-exposure log (``spawn(2)``
gives the first two unchanged). The same config gives byte-identical files.

Logging (the platform that produced ``events.csv``)
-----------------------------------------------------
All users start at step 0, each at its own time. At every step, each user that has not
churned is shown ONE item drawn from the logging policy :math:`\pi_0`
(:mod:`seqrec.data.logging_policy`); ``pscore`` is :math:`\pi_0` of the shown item. With
``exposure_bias`` :math:`S > 0` the policy is :math:`\pi_S`, tilted toward the items the
user is likely to click, and ``pscore`` is :math:`\pi_S` of the shown item.

The user views the item and clicks with the true probability; after a click the item is
added to cart with probability :math:`q^{cart}_i`, and after a cart purchased with
probability :math:`q^{buy}_i`. One row per shown item, with the deepest stage reached
(the names are ``behaviour_names``; these are the defaults):

========== ===== ============================
behaviour  value meaning
========== ===== ============================
view       0     impression without click
click      1     clicked, not carted
cart       2     carted, not purchased
purchase   3     purchased
========== ===== ============================

With a fav stage (``fav_prob`` > 0) a click that is not carted is favourited with
probability :math:`q^{fav}_i`, and the five values are: 0 not clicked, 1 clicked only,
2 favourited, 3 carted, 4 purchased.

Sessions, exit and churn:

* ``misses`` = consecutive non-click steps in the current session, counted after the
  step's outcome (0 right after a click; reset to 0 when a session starts).
* After every step the user ends the session with
  :math:`P(\mathrm{exit}) = \sigma(e_0 + e_1 \cdot \mathrm{misses})` (``exit_intercept``,
  ``exit_slope``; :meth:`~seqrec.data.ground_truth.GroundTruth.exit_probability`).
* After a session ends the user churns (never returns) with
  :math:`P(\mathrm{churn}) = \sigma(k_0 + k_1 \cdot r)`, :math:`r` = the session's share of
  non-click steps (``churn_intercept``, ``churn_slope``;
  :meth:`~seqrec.data.ground_truth.GroundTruth.churn_probability`);
  otherwise a new session starts. The click history (and so satiation) carries over.
* With ``max_sessions_per_user`` = :math:`k > 0` the user leaves at the end of the
  :math:`k`-th session instead of drawing churn (counted as ``n_session_limit``).
* A user's log is truncated after ``max_events_per_user`` events (counted in ``synth.json``
  as ``n_truncated``; the truncated last session did not end by exit).
* Timestamps (integer seconds): each user starts at ``start_ts + U{0, start_spread_s - 1}``;
  inside a session consecutive events are ``U{gap_min_s, gap_max_s}`` seconds apart; a new
  session starts ``session_gap_min_s + Exp(mean = session_gap_mean_s)`` seconds (floored)
  after the previous event.

Files (:func:`write_synthetic`)
-------------------------------
* ``events.csv`` -- ``user,item,ts,behaviour,value,session,pscore``; raw integer ids
  ``0..N-1`` / ``0..M-1``; ``session`` is a global session id numbered by (user, session
  order); sorted by user then ts; ``pscore`` with 10 significant digits. With
  ``write_impressions=False`` only the rows with ``value >= 1`` (clicks and deeper) and no
  ``pscore`` column: exactly the clicked rows of the log the same config writes with
  impressions; user and session ids keep their numbers, so those without a click are absent.
* ``items.csv`` -- ``item,category,popularity`` (popularity = :math:`\mathrm{pop}_i`).
* ``random_exposure.csv`` (only with ``random_exposure`` = :math:`K > 0`) --
  ``user,item,ts,behaviour,value,truth``: for every user, :math:`K` distinct items drawn
  uniformly from the catalogue (the ground truth a random-exposure log gives, as Coat's and
  Yahoo! R3's random parts do), each with an outcome drawn from the user's true P(click) at
  the end of the logging simulation (the history of all their clicks; no state changes
  between the :math:`K` items): ``value`` 1 and ``behaviour_names[1]`` (``click``) for a
  click, ``value`` 0 and ``behaviour_names[0]`` (``view``) for none; ``truth`` is that true
  P(click) (10 significant digits). ``ts`` = the time of the user's last shown item +
  ``session_gap_min_s`` + :math:`k` ``gap_min_s`` for the :math:`k`-th item. Any reader reads
  it as a generic log (``seqrec data prepare random_exposure.csv --positive value>=1``, or
  ``behaviour==click``; without ``--positive`` ``view`` is already a negative behaviour for the
  simulator). Drawn from a third stream of the seed, so ``events.csv`` does not change.
* ``truth.npz`` -- every ground-truth array and parameter, the config as JSON, and the
  format version; :meth:`GroundTruth.load <seqrec.data.ground_truth.GroundTruth.load>` restores it.
* ``synth.json`` -- format version, config, model parameters and summary counts.

Example::

    >>> from seqrec.data.synth_config import SynthConfig
    >>> from seqrec.data.synthetic import generate
    >>> log = generate(SynthConfig(n_users=50, n_items=60, n_categories=6, seed=1))
    >>> list(log.events.columns)
    ['user', 'item', 'ts', 'behaviour', 'value', 'session', 'pscore']
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

from seqrec.data.ground_truth import FORMAT_VERSION, GroundTruth
from seqrec.data.logging_policy import BLOCK_CELLS, LoggingPolicy
from seqrec.data.synth_config import DEFAULT_BEHAVIOURS, SynthConfig
from seqrec.infra.errors import SeqrecError

__all__ = ["BEHAVIOURS", "RANDOM_EXPOSURE", "SyntheticLog", "generate", "random_exposure_log", "write_synthetic"]

RANDOM_EXPOSURE = "random_exposure.csv"
"""File name of the random-exposure log (module docstring), beside ``events.csv``."""

BEHAVIOURS: tuple[str, ...] = DEFAULT_BEHAVIOURS
"""Default behaviour names (``SynthConfig.behaviour_names``); the index is the event's ``value``."""


@dataclass(frozen=True, eq=False)
class SyntheticLog:
    """An in-memory synthetic dataset: what :func:`write_synthetic` writes."""

    truth: GroundTruth
    """The model that generated the log."""
    events: pd.DataFrame
    """What ``events.csv`` holds: ``user,item,ts,behaviour,value,session[,pscore]`` sorted by user then ts."""
    impressions: pd.DataFrame
    """Every shown item with its outcome and ``pscore`` (``events`` itself when ``write_impressions``)."""
    items: pd.DataFrame
    """``item,category,popularity`` for every item."""
    summary: dict[str, Any]
    """Summary counts (also in ``synth.json``)."""
    random_exposure: pd.DataFrame | None = None
    """What ``random_exposure.csv`` holds (``user,item,ts,behaviour,value,truth``), or None
    when ``random_exposure`` is 0."""


def generate(cfg: SynthConfig | None = None) -> SyntheticLog:
    """Simulate the logging platform under the documented user model (see the module docstring)."""
    cfg = SynthConfig() if cfg is None else cfg
    truth = GroundTruth.from_config(cfg)
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed).spawn(2)[1])
    policy = truth.logging_policy
    N, M, W = cfg.n_users, cfg.n_items, cfg.history_window

    # per-user state
    hist = np.full((N, W), -1, dtype=np.int64)  # last W clicks, left-padded
    last = np.full(N, -1, dtype=np.int64)
    alive = np.ones(N, dtype=bool)
    misses = np.zeros(N, dtype=np.int64)
    sess_steps = np.zeros(N, dtype=np.int64)
    sess_miss = np.zeros(N, dtype=np.int64)
    sess_idx = np.zeros(N, dtype=np.int64)
    ts = cfg.start_ts + rng.integers(0, cfg.start_spread_s, size=N)

    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("user", "item", "ts", "value", "sess", "pscore")}
    n_churned = n_limit = 0
    for _step in range(cfg.max_events_per_user):
        # one fixed-size draw per quantity per step keeps the stream independent of who is alive
        u_comp, u_pop, u_cat = rng.random(N), rng.random(N), rng.random(N)
        uni_item = rng.integers(0, M, size=N)
        u_click, u_cart, u_buy, u_exit, u_churn = (rng.random(N) for _ in range(5))
        gap_in = rng.integers(cfg.gap_min_s, cfg.gap_max_s + 1, size=N)
        gap_out = cfg.session_gap_min_s + np.floor(rng.exponential(cfg.session_gap_mean_s, size=N)).astype(np.int64)
        u_fav = rng.random(N) if cfg.fav_prob > 0 else None  # drawn last: configs without fav keep their stream

        act = np.flatnonzero(alive)
        if act.size == 0:
            break
        la = last[act]
        # logging policy: popularity / same category as last click / uniform
        if cfg.exposure_bias > 0:  # pi_S: u_comp is the draw's uniform, the other numbers go unused
            shown, pscore = _biased_exposure(truth, act, hist[act], u_comp[act])
        else:
            shown = policy.sample(la, u_comp[act], u_pop[act], u_cat[act], uni_item[act])
            pscore = policy.propensity(la, shown)

        # user response
        p = expit(truth._logits(act, hist[act], shown))
        click = u_click[act] < p
        cart = click & (u_cart[act] < truth.cart_prob[shown])
        buy = cart & (u_buy[act] < truth.buy_prob[shown])
        value = click.astype(np.int64) + cart + buy
        if u_fav is not None:  # fav sits between click and cart: 1 click, 2 fav, 3 cart, 4 purchase
            value += cart | (click & (u_fav[act] < truth.fav_prob[shown]))

        cols["user"].append(act)
        cols["item"].append(shown)
        cols["ts"].append(ts[act].copy())
        cols["value"].append(value)
        cols["sess"].append(sess_idx[act].copy())
        cols["pscore"].append(pscore)

        # state update: clicks enter the history
        ck = act[click]
        hist[ck, :-1] = hist[ck, 1:]
        hist[ck, -1] = shown[click]
        last[ck] = shown[click]
        misses[act] = np.where(click, 0, misses[act] + 1)
        sess_steps[act] += 1
        sess_miss[act] += ~click

        # exit, then churn or a new session
        ex = u_exit[act] < truth.exit_probability(misses[act])
        ea = act[ex]
        limit = sess_idx[ea] + 1 >= cfg.max_sessions_per_user if cfg.max_sessions_per_user else np.zeros(ea.size, bool)
        churn = ~limit & (u_churn[ea] < truth.churn_probability(sess_miss[ea] / sess_steps[ea]))
        alive[ea[churn | limit]] = False
        n_churned += int(churn.sum())
        n_limit += int(limit.sum())
        back = ea[~(churn | limit)]
        sess_idx[back] += 1
        misses[ea] = 0
        sess_steps[ea] = 0
        sess_miss[ea] = 0
        ts[act] += np.where(ex, gap_out[act], gap_in[act])

    user = np.concatenate(cols["user"])
    order = np.argsort(user, kind="stable")  # steps are in time order per user
    user = user[order]
    item = np.concatenate(cols["item"])[order]
    value = np.concatenate(cols["value"])[order]
    sess_local = np.concatenate(cols["sess"])[order]
    n_sess_user = np.zeros(N, dtype=np.int64)
    np.maximum.at(n_sess_user, user, sess_local + 1)
    sess_offset = np.concatenate([[0], np.cumsum(n_sess_user)[:-1]])
    impressions = pd.DataFrame({
        "user": user,
        "item": item,
        "ts": np.concatenate(cols["ts"])[order],
        "behaviour": np.asarray(cfg.behaviour_names, dtype=object)[value],
        "value": value,
        "session": sess_offset[user] + sess_local,
        "pscore": np.concatenate(cols["pscore"])[order],
    })
    if cfg.write_impressions:
        events = impressions
    else:  # a click log: the clicked rows, without the logging propensities
        events = impressions.loc[value >= 1].drop(columns="pscore").reset_index(drop=True)
    items = pd.DataFrame({"item": np.arange(M), "category": truth.categories, "popularity": truth.popularity})
    summary = _summary(cfg, impressions, events, n_churned, n_limit)
    random_log = None
    if cfg.random_exposure:
        random_log = random_exposure_log(truth, hist, impressions.groupby("user")["ts"].max().reindex(range(N)).to_numpy())
        summary["random_exposure"] = {"per_user": cfg.random_exposure, "n_events": len(random_log),
                                      "click_rate": round(float(random_log["value"].mean()), 6),
                                      "mean_truth": round(float(random_log["truth"].mean()), 6)}  # fmt: skip
    return SyntheticLog(truth=truth, events=events, impressions=impressions, items=items, summary=summary, random_exposure=random_log)


def _biased_exposure(truth: GroundTruth, users: np.ndarray, histories: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One item per row from the tilted policy pi_S and its propensity, in blocks of rows.

    :param users: ``(B,)``; :param histories: the last W clicks, ``(B, W)``; :param u: uniforms ``(B,)``.
    :return: ``(shown (B,) int64, pscore (B,) float64)``.
    """
    shown = np.empty(users.shape[0], np.int64)
    pscore = np.empty(users.shape[0], np.float64)
    step = max(1, BLOCK_CELLS // truth.n_items)
    for s in range(0, users.shape[0], step):
        p = truth._exposure(users[s : s + step], histories[s : s + step])
        shown[s : s + step] = LoggingPolicy.draw(p, u[s : s + step])
        pscore[s : s + step] = p[np.arange(p.shape[0]), shown[s : s + step]]
    return shown, pscore


def random_exposure_log(truth: GroundTruth, histories: np.ndarray, last_ts: np.ndarray) -> pd.DataFrame:
    """The random-exposure log (module docstring): ``random_exposure`` distinct uniform items per user.

    :param histories: every user's last W clicks at the end of the simulation, ``(N, W)``.
    :param last_ts: every user's last logged time, ``(N,)``.
    :return: ``user,item,ts,behaviour,value,truth``, one row per (user, item), users in order.
    """
    cfg = truth.config
    N, M, K = truth.n_users, truth.n_items, cfg.random_exposure
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed).spawn(3)[2])
    items = np.empty((N, K), np.int64)
    step = max(1, BLOCK_CELLS // M)
    for s in range(0, N, step):  # K distinct items per user: the K smallest of M uniform keys
        keys = rng.random((min(step, N - s), M))
        items[s : s + step] = np.argpartition(keys, K - 1, axis=1)[:, :K] if K < M else np.argsort(keys, axis=1)
    p = np.empty((N, K), np.float64)
    for s in range(0, N, step):
        users = np.arange(s, min(s + step, N))
        p[users] = truth.click_probability(users, histories[users], items[users])
    click = rng.random((N, K)) < p
    names = np.asarray(cfg.behaviour_names[:2], dtype=object)
    return pd.DataFrame({
        "user": np.repeat(np.arange(N), K),
        "item": items.ravel(),
        "ts": (last_ts[:, None] + cfg.session_gap_min_s + cfg.gap_min_s * np.arange(K)[None, :]).ravel(),
        "behaviour": names[click.ravel().astype(np.int64)],
        "value": click.ravel().astype(np.int64),
        "truth": p.ravel(),
    })  # fmt: skip


def _summary(cfg: SynthConfig, impressions: pd.DataFrame, events: pd.DataFrame, n_churned: int,
             n_limit: int) -> dict[str, Any]:
    """Counts of the written log (``events``) and of the process behind it (``synth.json``).

    Keys beyond the default's appear only for the configs that need them, so the default's
    ``synth.json`` keeps its bytes.
    """
    written = cfg.behaviour_names if cfg.write_impressions else cfg.behaviour_names[1:]
    value = events["value"].to_numpy()
    per_user = np.bincount(events["user"].to_numpy(), minlength=cfg.n_users)
    in_log = per_user[per_user > 0]
    n_shown = np.bincount(impressions["user"].to_numpy(), minlength=cfg.n_users)
    n_events, n_sessions = len(events), int(events["session"].nunique())
    counts = np.bincount(value, minlength=len(cfg.behaviour_names))
    summary: dict[str, Any] = {
        "n_users": cfg.n_users,
        "n_items": cfg.n_items,
        "n_items_shown": int(impressions["item"].nunique()),
        "n_events": n_events,
        "n_sessions": n_sessions,
        "behaviour_counts": {b: int(counts[cfg.behaviour_names.index(b)]) for b in written},
        "click_rate": round(float((impressions["value"].to_numpy() >= 1).mean()), 6),
        "mean_events_per_user": round(n_events / max(in_log.size, 1), 6),
        "median_events_per_user": float(np.median(in_log)) if in_log.size else 0.0,
        "mean_session_length": round(n_events / max(n_sessions, 1), 6),
        "n_churned": n_churned,
        "n_truncated": int((n_shown == cfg.max_events_per_user).sum()),
    }
    if not cfg.write_impressions:
        summary.update(n_impressions=len(impressions), n_users_in_log=int(in_log.size),
                       n_items_in_log=int(events["item"].nunique()))
    if cfg.max_sessions_per_user:
        summary["n_session_limit"] = n_limit
    return summary


def _model_parameters(cfg: SynthConfig) -> dict[str, Any]:
    """The documented scalar parameters, by the names the module docstring uses."""
    return {
        "click_model": "P(click) = sigmoid(w0 + w1*<u_eff,v_i> + w2*b_i + w3*T[cat(last),cat(i)] - w4*sat(h,i))",
        "u_eff": "(1-rho)*u_long + rho*sum_k lambda^age_k v_hk / sum_k lambda^age_k",
        "satiation": "sum_k gamma^age_k * ([cat(h_k)==cat(i)] + kappa*[h_k==i]), last W clicks",
        "exit": "sigmoid(e0 + e1*misses)",
        "churn": "sigmoid(k0 + k1*session_miss_rate)",
        "logging_policy": "a_pop*pop_i + a_cat*[cat(i)==cat(last)]/|cat| + a_uni/M (a_cat -> uniform before a click)",
        "w0": cfg.w_intercept, "w1": cfg.w_preference, "w2": cfg.w_popularity,
        "w3": cfg.w_transition, "w4": cfg.w_satiation,
        "rho": cfg.drift, "lambda": cfg.recency_decay, "gamma": cfg.satiation_decay,
        "kappa": cfg.repeat_penalty, "W": cfg.history_window,
        "e0": cfg.exit_intercept, "e1": cfg.exit_slope,
        "k0": cfg.churn_intercept, "k1": cfg.churn_slope,
        "a_pop": cfg.log_popularity, "a_cat": cfg.log_same_category, "a_uni": cfg.log_uniform,
        "behaviour_values": {b: v for v, b in enumerate(cfg.behaviour_names)},
        **_regime_parameters(cfg),
    }


def _regime_parameters(cfg: SynthConfig) -> dict[str, Any]:
    """The documented parts of a regime (:mod:`seqrec.data.synth_presets`), only where they apply."""
    extra: dict[str, Any] = {}
    if cfg.popularity_zipf > 0:
        extra["popularity"] = "b_i = -s*(log rank_i - mean log rank), pop_i = rank_i^-s / H (Zipf)"
        extra["s"] = cfg.popularity_zipf
    if cfg.fav_prob > 0:
        extra["fav"] = "after a click without cart: fav with q_fav_i = sigmoid(logit(fav_prob) + noise)"
    if cfg.max_sessions_per_user:
        extra["session_limit"] = f"the user leaves after session {cfg.max_sessions_per_user} (no churn draw)"
    if not cfg.write_impressions:
        extra["written"] = "clicked events only (value >= 1), no pscore; the truth holds the full process"
    if cfg.exposure_bias > 0:
        extra["exposure"] = "pi_S(i|u,h) = pi_0(i|h) exp(S*logit P(click|u,h,i)) / Z(u,h); pscore = pi_S of the shown item"
        extra["S"] = cfg.exposure_bias
    if cfg.random_exposure:
        extra["random_exposure"] = (f"random_exposure.csv: {cfg.random_exposure} distinct uniform items per user, outcome ~ "
                                    "true P(click) at the end of the log (value 0/1, truth = that P)")  # fmt: skip
    return extra


def write_synthetic(out: str | Path, cfg: SynthConfig | None = None) -> Path:
    """Generate the synthetic dataset and write it to the folder ``out``; returns ``out``.

    Writes ``events.csv``, ``items.csv``, ``truth.npz`` and ``synth.json`` into a temporary
    sibling folder, then moves it into place with ``os.replace``. An existing ``out`` is
    replaced only if it is empty or a previous synthetic output (has ``synth.json``).
    """
    cfg = SynthConfig() if cfg is None else cfg
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SeqrecError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "synth.json").is_file():
        raise SeqrecError(f"{out}: folder is not empty and holds no synth.json; refusing to overwrite it")
    log = generate(cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        log.events.to_csv(tmp / "events.csv", index=False, float_format="%.10g", lineterminator="\n")
        log.items.to_csv(tmp / "items.csv", index=False, float_format="%.10g", lineterminator="\n")
        files = ["events.csv", "items.csv", "truth.npz", "synth.json"]
        if log.random_exposure is not None:
            log.random_exposure.to_csv(tmp / RANDOM_EXPOSURE, index=False, float_format="%.10g", lineterminator="\n")
            files.insert(2, RANDOM_EXPOSURE)
        log.truth.save(tmp / "truth.npz")
        meta = {
            "format_version": FORMAT_VERSION,
            "generator": "seqrec.data.synthetic",
            "config": cfg.to_dict(),
            "model": _model_parameters(cfg),
            "files": files,
            "summary": log.summary,
        }
        (tmp / "synth.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / "d")
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
