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

Randomness: ``np.random.SeedSequence(seed).spawn(2)`` gives two independent streams, one
for the ground-truth parameters (so :meth:`GroundTruth.from_config
<seqrec.data.ground_truth.GroundTruth.from_config>` regenerates them without simulating
the log) and one for the logging simulation. The same config gives byte-identical files.

Logging (the platform that produced ``events.csv``)
-----------------------------------------------------
All users start at step 0, each at its own time. At every step, each user that has not
churned is shown ONE item drawn from the logging policy :math:`\pi_0`
(:mod:`seqrec.data.logging_policy`); ``pscore`` is :math:`\pi_0` of the shown item.

The user views the item and clicks with the true probability; after a click the item is
added to cart with probability :math:`q^{cart}_i`, and after a cart purchased with
probability :math:`q^{buy}_i`. One row per shown item, with the deepest stage reached:

========== ===== ============================
behaviour  value meaning
========== ===== ============================
view       0     impression without click
click      1     clicked, not carted
cart       2     carted, not purchased
purchase   3     purchased
========== ===== ============================

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
  order); sorted by user then ts; ``pscore`` with 10 significant digits.
* ``items.csv`` -- ``item,category,popularity`` (popularity = :math:`\mathrm{pop}_i`).
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
from seqrec.data.synth_config import SynthConfig
from seqrec.infra.errors import SeqrecError

__all__ = ["BEHAVIOURS", "SyntheticLog", "generate", "write_synthetic"]

BEHAVIOURS: tuple[str, ...] = ("view", "click", "cart", "purchase")
"""Behaviour names; the index is the event's ``value``."""


@dataclass(frozen=True, eq=False)
class SyntheticLog:
    """An in-memory synthetic dataset: what :func:`write_synthetic` writes."""

    truth: GroundTruth
    """The model that generated the log."""
    events: pd.DataFrame
    """``user,item,ts,behaviour,value,session,pscore`` sorted by user then ts."""
    items: pd.DataFrame
    """``item,category,popularity`` for every item."""
    summary: dict[str, Any]
    """Summary counts (also in ``synth.json``)."""


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
    n_churned = 0
    for _step in range(cfg.max_events_per_user):
        # one fixed-size draw per quantity per step keeps the stream independent of who is alive
        u_comp, u_pop, u_cat = rng.random(N), rng.random(N), rng.random(N)
        uni_item = rng.integers(0, M, size=N)
        u_click, u_cart, u_buy, u_exit, u_churn = (rng.random(N) for _ in range(5))
        gap_in = rng.integers(cfg.gap_min_s, cfg.gap_max_s + 1, size=N)
        gap_out = cfg.session_gap_min_s + np.floor(rng.exponential(cfg.session_gap_mean_s, size=N)).astype(np.int64)

        act = np.flatnonzero(alive)
        if act.size == 0:
            break
        la = last[act]
        # logging policy: popularity / same category as last click / uniform
        shown = policy.sample(la, u_comp[act], u_pop[act], u_cat[act], uni_item[act])
        pscore = policy.propensity(la, shown)

        # user response
        p = expit(truth._logits(act, hist[act], shown))
        click = u_click[act] < p
        cart = click & (u_cart[act] < truth.cart_prob[shown])
        buy = cart & (u_buy[act] < truth.buy_prob[shown])
        value = click.astype(np.int64) + cart + buy

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
        churn = u_churn[ea] < truth.churn_probability(sess_miss[ea] / sess_steps[ea])
        alive[ea[churn]] = False
        n_churned += int(churn.sum())
        back = ea[~churn]
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
    events = pd.DataFrame({
        "user": user,
        "item": item,
        "ts": np.concatenate(cols["ts"])[order],
        "behaviour": np.asarray(BEHAVIOURS, dtype=object)[value],
        "value": value,
        "session": sess_offset[user] + sess_local,
        "pscore": np.concatenate(cols["pscore"])[order],
    })
    items = pd.DataFrame({"item": np.arange(M), "category": truth.categories, "popularity": truth.popularity})

    per_user = np.bincount(user, minlength=N)
    counts = np.bincount(value, minlength=4)
    n_events = int(user.size)
    summary = {
        "n_users": N,
        "n_items": M,
        "n_items_shown": int(np.unique(item).size),
        "n_events": n_events,
        "n_sessions": int(n_sess_user.sum()),
        "behaviour_counts": {b: int(c) for b, c in zip(BEHAVIOURS, counts)},
        "click_rate": round(float((value >= 1).mean()), 6),
        "mean_events_per_user": round(n_events / N, 6),
        "median_events_per_user": float(np.median(per_user)),
        "mean_session_length": round(n_events / int(n_sess_user.sum()), 6),
        "n_churned": n_churned,
        "n_truncated": int((per_user == cfg.max_events_per_user).sum()),
    }
    return SyntheticLog(truth=truth, events=events, items=items, summary=summary)


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
        "behaviour_values": {b: v for v, b in enumerate(BEHAVIOURS)},
    }


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
        log.truth.save(tmp / "truth.npz")
        meta = {
            "format_version": FORMAT_VERSION,
            "generator": "seqrec.data.synthetic",
            "config": cfg.to_dict(),
            "model": _model_parameters(cfg),
            "files": ["events.csv", "items.csv", "truth.npz", "synth.json"],
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
