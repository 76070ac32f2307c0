"""Benchmark: naive vs debiased simulators, validated on a random-exposure log of the same synthetic users.

The synthetic truth logs with a biased policy (``--exposure-bias S``: the old system showed
what each user was likely to click) and writes, beside it, ``random_exposure.csv`` (``K``
uniformly drawn items per user, outcomes from the true P(click), the ``truth`` column that
P). One bundle is built per ``--debias`` method on the biased log; each is scored by
``seqrec simulator validate`` on the random-exposure log. Targets (issue 17): the debiased
fit's ECE <= 0.02, its mean prediction within 5 % of the true positive rate, both better
than the naive fit's; Kendall tau >= 0.8 over >= 5 policies with distinct true values.

Run from the repository root (the full size: about 5 minutes on 2 cores; ``--users 300 --items
100 --epochs 1`` is the smoke size)::

    python benchmarks/sim_validation.py --users 3000 --items 500 --exposure-bias 2 --random-exposure 20 --out runs/sim-validation
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np


@dataclass
class Args:
    users: int = 3000
    """Synthetic users (SynthConfig.n_users)."""
    items: int = 500
    """Catalogue size."""
    exposure_bias: float = 2.0
    """S: strength of the logging policy's bias toward likely clicks."""
    random_exposure: int = 20
    """Randomly exposed items per user in random_exposure.csv."""
    debias: str = "none,ips,snips"
    """Comma-separated --debias methods, one bundle each ("none" = the naive fit)."""
    epochs: int = 2
    """Encoder pretraining epochs of each bundle (the greedy policy; the simulator fit keeps its defaults)."""
    seed: int = 0
    """Seed of the data, the fits and the validation."""
    threads: int = 1
    """torch CPU threads."""
    out: Path | None = None
    """Keep the data, bundles and validation folders here (default: a temporary folder)."""


def parse() -> Args:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in fields(Args):
        p.add_argument("--" + f.name.replace("_", "-"), type=Path if f.name == "out" else type(f.default), default=f.default)
    return Args(**vars(p.parse_args()))


def seqrec(*argv: str) -> None:
    """Run one seqrec command in this process; stop the benchmark on failure."""
    from seqrec.cli.main import main

    code = main([str(a) for a in argv])
    if code != 0:
        sys.exit(f"seqrec {' '.join(map(str, argv))} exited {code}")


def run(args: Args, root: Path) -> list[dict]:
    import pandas as pd

    data = root / "data"
    seqrec("data", "synth", "--users", args.users, "--items", args.items, "--exposure-bias", args.exposure_bias,
           "--random-exposure", args.random_exposure, "--seed", args.seed, "--out", data)  # fmt: skip
    random_log = data / "random_exposure.csv"
    true_rate = float(pd.read_csv(random_log, usecols=["truth"])["truth"].mean())
    rows = []
    for method in [m.strip() for m in args.debias.split(",") if m.strip()]:
        bundle, val = root / f"bundle-{method}", root / f"validation-{method}"
        t0 = time.perf_counter()
        seqrec("prepare", data, "--out", bundle, "--debias", method, "--epochs", args.epochs, "--seed", args.seed,
               "--threads", args.threads, "--allow-weak-simulator")  # fmt: skip
        build_s = time.perf_counter() - t0
        seqrec("simulator", "validate", bundle, "--unbiased", random_log, "--out", val, "--seed", args.seed, "--threads", args.threads)
        rep = json.loads((val / "validation.json").read_text())
        ranking = rep["policy_ranking"]
        unbiased = np.array([v["unbiased"] for v in ranking["policies"].values()])
        rows.append({"debias": method, "auc": rep["auc"], "popularity_auc": rep["baseline"]["auc"], "log_loss": rep["log_loss"],
                     "ece": rep["ece"], "mean_prediction": rep["mean_prediction"], "positive_rate": rep["positive_rate"],
                     "true_rate": round(true_rate, 5), "mean_rel_error": round(abs(rep["mean_prediction"] / true_rate - 1), 4),
                     "kendall_tau": ranking["kendall_tau"], "spearman": ranking["spearman"], "policies": len(unbiased),
                     "distinct_true_values": int(len(np.unique(unbiased))), "n": rep["n"], "build_s": round(build_s),
                     "values": ranking["policies"]})  # fmt: skip
    return rows


def table(rows: list[dict]) -> str:
    cols = ["debias", "auc", "popularity_auc", "log_loss", "ece", "mean_prediction", "positive_rate", "true_rate", "mean_rel_error",
            "kendall_tau", "spearman", "policies", "distinct_true_values", "n", "build_s"]  # fmt: skip
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    args = parse()
    import torch

    torch.set_num_threads(args.threads)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        rows = run(args, args.out)
    else:
        with tempfile.TemporaryDirectory(prefix="sim-validation-") as tmp:
            rows = run(args, Path(tmp))
    print(f"\nsynthetic: {args.users} users, {args.items} items, exposure bias {args.exposure_bias:g}, "
          f"{args.random_exposure} random items per user, seed {args.seed}\n")
    print(table(rows))
    for r in rows:
        print(f"\n{r['debias']}: " + ", ".join(f"{k} {v['simulated']}/{v['unbiased']}" for k, v in r["values"].items())
              + "  (simulated/unbiased)")


if __name__ == "__main__":
    main()
