"""Readable results: table rows (for a terminal or a log), markdown, and PNG plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np

COLUMNS = ("mean_return", "ctr", "mean_length", "coverage", "diversity", "novelty")
HEADER = ("policy", "return (95% CI)", "CTR", "mean length", "coverage", "diversity", "novelty")


def results_rows(results: list[dict]) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """(header, rows): one row per policy, best mean return first, its 95% CI beside it."""
    rows = []
    for r in sorted(results, key=lambda r: -r["mean_return"]):
        lo, hi = r["return_ci95"]
        rows.append((r["policy"], f"{r['mean_return']:.3f} [{lo:.3f}, {hi:.3f}]", f"{r['ctr']:.3f}", f"{r['mean_length']:.2f}",
                     f"{r['coverage']:.3f}", f"{r['diversity']:.3f}", f"{r['novelty']:.2f}"))  # fmt: skip
    return HEADER, rows


def markdown_table(results: list[dict]) -> str:
    """The same rows as a markdown table (for reports and benchmarks/README.md)."""
    header, rows = results_rows(results)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def bar_chart(tables: list[dict], path: Path) -> Path:
    """Mean return (95% CI) and mean episode length per policy: horizontal bars, one row of
    panels per env table, so long policy names stay readable."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows = max(len(t["results"]) for t in tables)
    fig, axes = plt.subplots(len(tables), 2, figsize=(11, 0.45 * n_rows * len(tables) + 1.5), squeeze=False)
    for (ax_ret, ax_len), table in zip(axes, tables):
        rs = sorted(table["results"], key=lambda r: r["mean_return"])  # best on top
        names = [r["policy"] for r in rs]
        means = np.array([r["mean_return"] for r in rs])
        err = np.array([[m - r["return_ci95"][0], r["return_ci95"][1] - m] for m, r in zip(means, rs)]).T
        ax_ret.barh(names, means, xerr=err, capsize=3, color="tab:blue")
        ax_ret.set_xlabel("mean return (95% CI)")
        ax_len.barh(names, [r["mean_length"] for r in rs], color="tab:green")
        ax_len.set_xlabel("mean episode length (retention)")
        ax_len.set_yticklabels([])
        env = ", ".join(f"{k}={v}" for k, v in sorted(table["env"].items()))
        ax_ret.set_title(f"env: {env}", fontsize=9, loc="left")
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
        ax.plot(data["timesteps"], data["results"].mean(axis=1), marker="o", label=run.name)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("evaluation return")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
