"""The PNG plots of the fidelity report (:func:`seqrec.simulators.fidelity.fidelity_report`).

:func:`write_plots` draws with matplotlib's ``Agg`` backend, imported on first use:

* ``reliability.png`` -- the reliability diagram of the headline click protocol;
* ``popularity.png`` -- simulated vs logged clicks by item-popularity decile (replay);
* ``categories.png`` -- the same by category, for logs with side features;
* ``session_lengths.png`` -- simulated vs logged session lengths under replay;
* ``truth.png`` -- fitted vs true P(click) of the ground-truth check, when there is one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["write_plots"]


def write_plots(out: Path, report: dict, reliability: dict, sim_dec: np.ndarray, log_dec: np.ndarray,
                sim_cat: np.ndarray | None, log_cat: np.ndarray | None, sim_lh: np.ndarray, log_lh: np.ndarray,
                bins: np.ndarray, cat_names: list[str], truth: dict | None,
                scatter: tuple[np.ndarray, np.ndarray] | None) -> None:
    """Write the report's PNGs into ``out`` (module docstring); titles quote ``report``.

    :param reliability: the headline click protocol's ECE bin table (``count``, ``confidence``, ``frequency``).
    :param sim_dec: clicks per item-popularity decile under replay, shape ``(10,)``; ``log_dec`` the logged ones.
    :param sim_cat: click mass per category (side feature) under replay, shape ``(F,)``, or None without
        side features; ``log_cat`` the logged ones.
    :param sim_lh: session-length histogram under replay over ``bins`` (last bin = cap); ``log_lh`` the logged one.
    :param cat_names: the side features' names (the part after the last ``:`` labels the bars).
    :param truth: the report's ``ground_truth`` section, or None; ``scatter``: its ``(fitted, true)`` P(click).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)

    # reliability diagram
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    n = np.asarray(reliability["count"])
    conf, freq = np.asarray(reliability["confidence"]), np.asarray(reliability["frequency"])
    ok = n > 0
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1)
    ax.plot(conf[ok], freq[ok], "o-", color="C0")
    head = report["click_model"]["headline"]
    ax.set(xlabel="predicted P(click)", ylabel="observed click frequency",
           title=f"reliability ({head}), ECE={report['click_model']['ece']:.3f}", xlim=(0, 1), ylim=(0, 1))
    save(fig, "reliability.png")

    def bars(a: np.ndarray, b: np.ndarray, labels: list[str], title: str, name: str, xlabel: str) -> None:
        fig, ax = plt.subplots(figsize=(max(5.0, 0.3 * len(a) + 2), 3.8))
        x = np.arange(len(a))
        ax.bar(x - 0.2, a / max(a.sum(), 1e-12), 0.4, label="simulated")
        ax.bar(x + 0.2, b / max(b.sum(), 1e-12), 0.4, label="logged")
        ax.set_xticks(x, labels, rotation=60 if len(a) > 10 else 0, fontsize=7 if len(a) > 10 else 9)
        ax.set(title=title, ylabel="share of clicks", xlabel=xlabel)
        ax.legend()
        save(fig, name)

    rp = report["replay"]
    bars(sim_dec, log_dec, [str(i + 1) for i in range(10)], f"clicks by item-popularity decile (JS={rp['js_popularity_deciles']})",
         "popularity.png", "popularity decile (1 = most popular)")
    if sim_cat is not None and log_cat is not None:
        bars(sim_cat, log_cat, [c.split(":")[-1] for c in cat_names], f"clicks by category (JS={rp['js_categories']})",
             "categories.png", "")
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    centers = bins[:-1]
    ax.step(centers, sim_lh / max(sim_lh.sum(), 1), where="mid", label=f"simulated (mean {rp['sim_mean_session_length']:.1f})")
    ax.step(centers, log_lh / max(log_lh.sum(), 1), where="mid", label=f"logged (mean {rp['log_mean_session_length']:.1f})")
    ax.set(xlabel="session length (steps; last bin = cap)", ylabel="share of sessions",
           title=f"session lengths under replay (JS={rp['js_session_length']})")
    ax.legend()
    save(fig, "session_lengths.png")
    if truth is not None and scatter is not None:
        fitted, true = scatter
        fig, ax = plt.subplots(figsize=(4.6, 4.4))
        ax.scatter(true, fitted, s=3, alpha=0.3)
        ax.plot([0, 1], [0, 1], "--", color="grey", lw=1)
        ax.set(xlabel="true P(click)", ylabel="fitted P(click)", xlim=(0, 1), ylim=(0, 1),
               title=f"random (history, item) pairs, Spearman={truth['spearman_click']}")
        save(fig, "truth.png")
