"""Readable results: a terminal table, JSON, PNG plots and a markdown report."""

from __future__ import annotations

from pathlib import Path

import numpy as np

COLUMNS = ("mean_return", "ctr", "mean_length", "coverage", "diversity", "novelty")


def results_table(results: list[dict], title: str = "Online evaluation"):
    """A rich Table: one row per policy, mean return with its 95% CI first."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("policy")
    table.add_column("return (95% CI)", justify="right")
    for col in COLUMNS[1:]:
        table.add_column(col.replace("_", " "), justify="right")
    for r in sorted(results, key=lambda r: -r["mean_return"]):
        lo, hi = r["return_ci95"]
        table.add_row(r["policy"], f"{r['mean_return']:.3f} [{lo:.3f}, {hi:.3f}]", *(f"{r[c]:.3f}" for c in COLUMNS[1:]))
    return table


def markdown_table(results: list[dict]) -> str:
    """The same table as markdown (for reports and benchmarks/README.md)."""
    head = "| policy | return (95% CI) | CTR | mean length | coverage | diversity | novelty |\n|---|---|---|---|---|---|---|\n"
    rows = []
    for r in sorted(results, key=lambda r: -r["mean_return"]):
        lo, hi = r["return_ci95"]
        rows.append(f"| {r['policy']} | {r['mean_return']:.3f} [{lo:.3f}, {hi:.3f}] | {r['ctr']:.3f} | {r['mean_length']:.2f} | "
                    f"{r['coverage']:.3f} | {r['diversity']:.3f} | {r['novelty']:.2f} |")  # fmt: skip
    return head + "\n".join(rows) + "\n"


def bar_chart(results: list[dict], path: Path) -> Path:
    """Mean return with 95% CI error bars, and mean episode length, per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rs = sorted(results, key=lambda r: -r["mean_return"])
    names = [r["policy"] for r in rs]
    means = np.array([r["mean_return"] for r in rs])
    err = np.array([[m - r["return_ci95"][0], r["return_ci95"][1] - m] for m, r in zip(means, rs)]).T
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].bar(names, means, yerr=err, capsize=4, color="tab:blue")
    axes[0].set_ylabel("mean return (95% CI)")
    axes[1].bar(names, [r["mean_length"] for r in rs], color="tab:green")
    axes[1].set_ylabel("mean episode length (retention)")
    for ax in axes:
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def learning_curves(runs: list[Path], path: Path) -> Path | None:
    """Periodic evaluation return against steps for each run (from ``evaluations.npz``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = [(r, np.load(r / "evaluations.npz")) for r in runs if (r / "evaluations.npz").exists()]
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for run, data in curves:
        mean = data["results"].mean(axis=1)
        ax.plot(data["timesteps"], mean, marker="o", label=run.name)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("evaluation return")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
