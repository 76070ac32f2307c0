"""Is the fitted simulator worth simulating with? Its click model beside popularity, its P(click) spread, the gate.

A simulator that ranks held-out clicks no better than item popularity, or whose P(click)
is nearly constant, scores every policy alike (on one public session log the click AUC
was 0.378 and P(click) constant at 0.2: random, popularity, greedy and the oracle tied to
the third decimal). These checks compare the model with the **popularity baseline on the
very same held-out pairs** (same positives, same negatives: train-split click counts as
the score), per positive behaviour, and measure the spread of the simulated P(click).
:func:`weak_simulator_problems` turns them into one-line reasons, which ``seqrec prepare``
refuses a bundle on unless told ``--allow-weak-simulator``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from seqrec.data.sequences import SequenceData
from seqrec.simulators.calibration import HeldOut
from seqrec.simulators.examples import ClickLog
from seqrec.simulators.simulator import UserSimulator

__all__ = ["GateConfig", "popularity_comparison", "probability_spread", "protocol_view", "weak_simulator_problems"]


@dataclass
class GateConfig:
    """When a simulator is too weak to build a bundle on."""

    min_auc_margin: float = 0.01
    """The click AUC must exceed the popularity baseline's by more than this (about the
    resolution of an AUC on a few thousand held-out pairs, so a tie is not read as a win)."""
    min_spread: float = 0.01
    """The 5–95 % range of held-out P(click) must be at least this wide (else P(click) is constant)."""


def protocol_view(sim: UserSimulator) -> UserSimulator:
    """``sim`` without its base-rate shift: P(click) as the held-out protocol calibrated it.

    On logs without impressions the base rate is set, not learned
    (``SimulatorConfig.base_click_rate``); calibration metrics (log-loss, ECE) are measured
    against the protocol the log does identify.
    """
    if sim.calibration.shift == 0.0:
        return sim
    view = copy.copy(sim)
    view.calibration = replace(sim.calibration, shift=0.0)
    return view


def _auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return round(float(roc_auc_score(labels, scores)), 5) if 0 < labels.sum() < len(labels) else None


def popularity_comparison(pairs: HeldOut, predicted: np.ndarray, seq: SequenceData, clicks: ClickLog,
                          fit_rows: np.ndarray) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Model vs popularity AUC on ``pairs``: ``{"all": …, "<behaviour>": …}``.

    Each entry: ``model_auc``, ``popularity_auc`` (score = the item's clicks among
    ``fit_rows``, the events the model was fitted on: never the held-out pairs' own) and
    ``positives``. Per behaviour, that behaviour's positives against all the negatives of
    the same pairs.
    """
    fit_rows = np.asarray(fit_rows, np.int64)
    clicked = fit_rows[clicks.positive[fit_rows]]
    popularity = np.bincount(seq.items[clicked], minlength=seq.n_items).astype(np.float64)[pairs.items]
    popularity += 1e-6 * np.random.default_rng(0).random(len(popularity))  # break the many ties of unseen items evenly
    labels = pairs.labels.astype(np.float64)
    out = {"all": {"model_auc": _auc(predicted, labels), "popularity_auc": _auc(popularity, labels), "positives": int(labels.sum())}}
    if pairs.behaviour is None:
        return out
    negative = labels == 0
    for code in np.unique(pairs.behaviour[labels == 1]):
        keep = negative | ((labels == 1) & (pairs.behaviour == code))
        out[seq.behaviour_names[int(code)]] = {"model_auc": _auc(predicted[keep], labels[keep]),
                                               "popularity_auc": _auc(popularity[keep], labels[keep]),
                                               "positives": int((keep & ~negative).sum())}  # fmt: skip
    return out


def probability_spread(p: np.ndarray) -> dict[str, float]:
    """Quantiles of simulated P(click) and the 5–95 % range (``spread``)."""
    q = np.quantile(np.asarray(p, np.float64), [0.05, 0.5, 0.95]) if len(p) else np.full(3, np.nan)
    return {"p05": round(float(q[0]), 5), "p50": round(float(q[1]), 5), "p95": round(float(q[2]), 5),
            "spread": round(float(q[2] - q[0]), 5), "mean": round(float(np.mean(p)), 5) if len(p) else None}  # fmt: skip


def weak_simulator_problems(report: dict, config: GateConfig = GateConfig()) -> list[str]:
    """One line per reason the fidelity report's simulator cannot tell policies apart (empty: fine)."""
    click = report.get("click_model", {})
    head, overall = click.get("headline", "?"), click.get("vs_popularity", {}).get("all", {})
    auc, pop = overall.get("model_auc"), overall.get("popularity_auc")
    problems = []
    if auc is None:
        problems.append(f"click AUC ({head}) could not be measured: no held-out positives and negatives")
    elif pop is not None and not auc > pop + config.min_auc_margin:
        problems.append(f"click AUC {auc:.3f} is not above the popularity baseline's {pop:.3f} (by > {config.min_auc_margin:g}) on the same held-out pairs ({head})")
    spread = click.get("p_click", {}).get("spread")
    if spread is not None and spread < config.min_spread:
        p = click["p_click"]
        problems.append(f"P(click) is degenerate: 90 % of held-out predictions lie in [{p['p05']:.4f}, {p['p95']:.4f}] (spread {spread:.4f} < {config.min_spread:g})")
    return problems
