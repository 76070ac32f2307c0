"""Benchmark: fit the user simulator on the synthetic default and on ML-100K, print a markdown table.

Run from the repository root::

    python benchmarks/simulator.py                       # both datasets, 1 torch thread
    python benchmarks/simulator.py --ml100k PATH --out runs/sim-bench

Columns: held-out click AUC, log-loss and ECE (headline protocol of the fidelity report:
random held-out impressions for logs with real negatives, test positives against
``eval_negatives`` never-touched items otherwise), the sampled-negative test AUC, Spearman
of fitted vs true P(click) and P(exit) (synthetic only), Jensen-Shannon divergences of the
replayed click distributions (items, popularity deciles, categories) and session lengths,
fit seconds and simulator steps per second at a batch of 64 users.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass
class Args:
    ml100k: Path = Path("../shared/data/ml-100k")
    """ML-100K folder (skipped with a note when absent)."""
    out: Path | None = None
    """Keep each run's simulator.pt, fidelity.json and PNGs under this folder."""
    threads: int = 1
    """torch CPU threads."""
    seed: int = 0
    """Seed of the fits and the fidelity simulations."""


def parse() -> Args:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ml100k", type=Path, default=Args.ml100k)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--threads", type=int, default=Args.threads)
    p.add_argument("--seed", type=int, default=Args.seed)
    return Args(**vars(p.parse_args()))


def run_one(name: str, data: Path, out: Path, seed: int, truth_dir: Path | None) -> dict:
    from seqrec.data.prepare import prepare_dataset
    from seqrec.simulators.config import SimulatorConfig
    from seqrec.simulators.fidelity import fidelity_report
    from seqrec.simulators.simulator import fit_simulator

    seq = prepare_dataset(data)
    truth = None
    if truth_dir is not None:
        from seqrec.data.ground_truth import GroundTruth

        truth = GroundTruth.load(truth_dir)
    t0 = time.perf_counter()
    sim = fit_simulator(seq, SimulatorConfig(seed=seed), out)
    fit_s = time.perf_counter() - t0
    rep = fidelity_report(sim, seq, out, truth=truth, seed=seed)
    c, r, g = rep["click_model"], rep["replay"], rep.get("ground_truth") or {}
    return {
        "dataset": name, "auc": c["auc"], "log_loss": c["log_loss"], "ece": c["ece"], "protocol": c["headline"],
        "auc_test_sampled": c["test_sampled"]["auc"], "spearman_click": g.get("spearman_click"),
        "spearman_exit": g.get("spearman_exit"), "js_items": r["js_items"], "js_pop": r["js_popularity_deciles"],
        "js_cat": r["js_categories"], "js_session": r["js_session_length"], "fit_s": round(fit_s, 1),
        "steps_per_s": rep["throughput"]["steps_per_s"], "slate10_steps_per_s": rep["throughput"]["slate_10_steps_per_s"],
    }


def fmt(x: object) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.1f}" if abs(x) >= 5 else f"{x:.3f}"
    return str(x)


def main() -> None:
    args = parse()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    from seqrec.data.synth_config import SynthConfig
    from seqrec.data.synthetic import write_synthetic

    rows, notes = [], []
    with tempfile.TemporaryDirectory(prefix="seqrec-simbench-") as tmp:
        out_root = args.out or Path(tmp) / "runs"
        synth = write_synthetic(Path(tmp) / "synthetic", SynthConfig())
        rows.append(run_one("synthetic default", synth, out_root / "synthetic", args.seed, synth))
        if (args.ml100k / "u.data").is_file():
            rows.append(run_one("ML-100K", args.ml100k, out_root / "ml-100k", args.seed, None))
        else:
            notes.append(f"ML-100K skipped: {args.ml100k}/u.data not found")
    cmd = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    print(f"`{cmd}` — {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}, torch {torch.__version__}, "
          f"{args.threads} thread(s), {platform.processor() or platform.machine()}\n")
    cols = [("dataset", "dataset"), ("AUC", "auc"), ("log-loss", "log_loss"), ("ECE", "ece"), ("protocol", "protocol"),
            ("AUC test (sampled)", "auc_test_sampled"), ("Spearman click", "spearman_click"),
            ("Spearman exit", "spearman_exit"), ("JS items", "js_items"), ("JS pop. deciles", "js_pop"),
            ("JS categories", "js_cat"), ("JS session length", "js_session"), ("fit s", "fit_s"),
            ("steps/s B=64", "steps_per_s"), ("steps/s B=64 slate 10", "slate10_steps_per_s")]
    print("| " + " | ".join(c for c, _ in cols) + " |")
    print("|" + "|".join("---" for _ in cols) + "|")
    for r in rows:
        print("| " + " | ".join(fmt(r[k]) for _, k in cols) + " |")
    for n in notes:
        print(f"\n{n}")
    print("\n```json\n" + json.dumps(rows) + "\n```")


if __name__ == "__main__":
    main()
