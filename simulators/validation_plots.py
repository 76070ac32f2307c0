"""The PNGs of ``seqrec simulator validate`` (:mod:`seqrec.simulators.validation`), matplotlib ``Agg``:

* ``reliability.png`` -- predicted P(positive) vs observed positive rate on the randomly exposed
  events, per ECE bin, for the simulator and the popularity baseline;
* ``policies.png`` -- each policy's simulated value against its unbiased value (Kendall tau in the title).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["write_validation_plots"]


def write_validation_plots(out: Path, report: dict, reliability: dict, baseline_reliability: dict) -> list[Path]:
    """Write the two PNGs into ``out``; titles quote ``report`` (what ``validation.json`` holds).

    :param reliability: the simulator's ECE bin table (``count``, ``confidence``, ``frequency``);
        ``baseline_reliability`` the popularity baseline's.
    :return: the paths written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def save(fig: Any, name: str) -> Path:
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        return out / name

    fig, ax = plt.subplots(figsize=(4.8, 4.6))
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1)
    for table, label, style in ((reliability, f"simulator (ECE {report['ece']:.3f})", "o-"),
                                (baseline_reliability, f"popularity (ECE {report['baseline']['ece']:.3f})", "s--")):
        n = np.asarray(table["count"])
        ok = n > 0
        ax.plot(np.asarray(table["confidence"])[ok], np.asarray(table["frequency"])[ok], style, label=label)
    ax.axhline(report["positive_rate"], color="C2", lw=0.8, ls=":", label=f"positive rate {report['positive_rate']:.3f}")
    ax.set(xlabel="predicted P(positive)", ylabel="observed positive rate", xlim=(0, 1), ylim=(0, 1),
           title=f"randomly exposed events (n={report['n']})")
    ax.legend(fontsize=8)
    paths = [save(fig, "reliability.png")]

    ranking = report["policy_ranking"]
    names = list(ranking["policies"])
    sim_v = np.array([ranking["policies"][k]["simulated"] for k in names], np.float64)
    true_v = np.array([ranking["policies"][k]["unbiased"] for k in names], np.float64)
    fig, ax = plt.subplots(figsize=(4.8, 4.6))
    ax.scatter(true_v, sim_v, color="C0")
    for k, (name, x, y) in enumerate(zip(names, true_v, sim_v)):  # alternate above / below: close policies stay readable
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4 if k % 2 == 0 else -11), fontsize=8)
    lo, hi = float(np.nanmin(np.r_[sim_v, true_v, 0.0])), float(np.nanmax(np.r_[sim_v, true_v, 0.01]))
    pad = 0.05 * (hi - lo)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "--", color="grey", lw=1)
    tau = ranking["kendall_tau"]
    ax.set(xlabel="unbiased value (mean observed outcome of the picks)", ylabel="simulated value (mean P(positive))",
           title=f"policies: Kendall tau {'n/a' if tau is None else f'{tau:.2f}'}")
    paths.append(save(fig, "policies.png"))
    return paths
