"""Benchmark: how much of the synthetic truth a log of a given size identifies.

The fidelity report's ground-truth check (Spearman of fitted vs true P(click) over random
(history, item) pairs) is run for synthetic logs of several sizes and truth seeds, next to
two reference estimators fitted on the same training events that are *given* part of the
truth, so the gap between the simulator and the truth can be split into what the log
cannot tell and what the model misses:

* ``known preference`` -- the true logit with the true user and item vectors (so the
  preference term is exact) and the true satiation feature; only the item biases (M), the
  category transition matrix (C x C) and the satiation weight are estimated. Its Spearman
  is an upper bound for any model that must also learn the preferences.
* ``category form`` -- the exact functional form at the category level, no user term:
  item biases, the transition matrix, a category affinity matrix on the history's
  recency-weighted category mix (the true decay) and the satiation weight (on the true
  satiation feature) are estimated. The fitted simulator has these terms and more.

Both are MAP logistic regressions (standard normal priors, L-BFGS) on the train and
validation events. Run from the repository root::

    python benchmarks/simulator_truth.py --users 1000,3000,5000 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", default="1000,3000,5000", help="comma-separated SynthConfig.n_users")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated SynthConfig seeds (truth draws)")
    p.add_argument("--pairs", type=int, default=20_000, help="random (history, item) pairs")
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args()


def category_mix(truth, histories: np.ndarray) -> np.ndarray:
    """Recency-weighted (the true decay) category shares of raw-id histories, ``(B, C)``."""
    valid = histories >= 0
    age = np.cumsum(valid[:, ::-1], axis=1)[:, ::-1] - 1
    w = np.where(valid, truth.config.recency_decay ** age.astype(np.float64), 0.0)
    w /= np.maximum(w.sum(1, keepdims=True), 1e-12)
    mix = np.zeros((len(histories), truth.n_categories))
    rows = np.repeat(np.arange(len(histories)), histories.shape[1])
    np.add.at(mix, (rows, truth.categories[np.maximum(histories, 0)].ravel()), w.ravel())
    return mix


class Reference(torch.nn.Module):
    """Logistic regression with the truth's form: ``offset + b_i + T[c_last, c_i] + mix @ A[:, c_i] - w * sat``."""

    def __init__(self, n_items: int, n_cat: int, affinity: bool):
        super().__init__()
        self.b = torch.nn.Parameter(torch.zeros(n_items))
        self.T = torch.nn.Parameter(torch.zeros(n_cat, n_cat))
        self.A = torch.nn.Parameter(torch.zeros(n_cat, n_cat)) if affinity else None
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        z = x["offset"] + self.b[x["item"]] - self.w * x["sat"]
        z = z + torch.where(x["has"], self.T[x["last_cat"], x["cat"]], torch.zeros(()))
        if self.A is not None:
            z = z + (x["mix"] * self.A[:, x["cat"]].T).sum(1)
        return z

    def penalty(self) -> torch.Tensor:
        return 0.5 * sum(p.pow(2).sum() for p in self.parameters())


def reference_inputs(truth, users: np.ndarray, hist: np.ndarray, items: np.ndarray, known_preference: bool) -> dict:
    """Model inputs for raw-id ``users (B,)``, ``hist (B, L)``, ``items (B,)``."""
    c = truth.config
    terms = truth.logit_terms(users, hist, items)
    last = np.where((hist >= 0).any(1), hist[np.arange(len(hist)), -1], -1)  # left-padded: last column
    offset = c.w_intercept + (c.w_preference * terms.preference if known_preference else 0.0)
    x = {"offset": offset, "item": items, "sat": terms.satiation, "has": last >= 0,
         "last_cat": truth.categories[np.maximum(last, 0)], "cat": truth.categories[items],
         "mix": category_mix(truth, hist)}
    return {k: torch.as_tensor(np.asarray(v)).float() if np.asarray(v).dtype.kind == "f" else torch.as_tensor(np.asarray(v))
            for k, v in x.items()}


def fit_reference(truth, x: dict, labels: np.ndarray, affinity: bool) -> Reference:
    model = Reference(truth.n_items, truth.n_categories, affinity)
    y = torch.as_tensor(labels, dtype=torch.float32)
    opt = torch.optim.LBFGS(model.parameters(), max_iter=300, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(x), y, reduction="sum") + model.penalty()
        loss.backward()
        return loss

    for _ in range(3):
        opt.step(closure)
    return model


def run(n_users: int, seed: int, n_pairs: int, tmp: Path) -> dict:
    from scipy.stats import spearmanr

    from seqrec.data.prepare import prepare_dataset
    from seqrec.data.sequences import SPLIT_NAMES
    from seqrec.data.ground_truth import GroundTruth
    from seqrec.data.synth_config import SynthConfig
    from seqrec.data.synthetic import write_synthetic
    from seqrec.simulators.config import SimulatorConfig
    from seqrec.simulators.examples import ClickLog
    from seqrec.simulators.fidelity import ground_truth_check, truth_pairs
    from seqrec.simulators.simulator import fit_simulator

    folder = write_synthetic(tmp / f"synth-{n_users}-{seed}", SynthConfig(n_users=n_users, seed=seed))
    seq = prepare_dataset(folder, cache_dir=tmp / "cache")
    truth = GroundTruth.load(folder)
    t0 = time.perf_counter()
    sim = fit_simulator(seq, SimulatorConfig())
    fit_s = time.perf_counter() - t0
    clicks = ClickLog.build(seq, sim.config.negative_behaviours)
    gt, _ = ground_truth_check(sim, seq, clicks, truth, n_pairs, 0)

    uid, iid = np.asarray(seq.user_ids, np.int64), np.asarray(seq.item_ids, np.int64)

    def raw(h: np.ndarray) -> np.ndarray:
        return np.where(h >= 0, iid[np.maximum(h, 0)], -1)

    L = truth.config.history_window
    rows = np.flatnonzero(seq.split != SPLIT_NAMES["test"])
    hist, _ = clicks.histories(rows, L)
    _, pu, ph, pi = truth_pairs(clicks, n_pairs, L, np.random.default_rng(0 + 11))  # the check's pairs
    pu, ph, pi = uid[pu], raw(ph), iid[pi]
    true_p = truth.click_probability(pu, ph, pi)
    out = {"users": n_users, "seed": seed, "events": int(seq.n_events), "fit_s": round(fit_s, 1),
           "simulator": gt["spearman_click"], "simulator_logged": gt["spearman_click_logged_items"]}
    for name, known in (("known_preference", True), ("category_form", False)):
        x = reference_inputs(truth, uid[seq.users[rows]], raw(hist), iid[seq.items[rows]], known)
        model = fit_reference(truth, x, clicks.positive[rows], affinity=not known)
        with torch.no_grad():
            z = model(reference_inputs(truth, pu, ph, pi, known)).numpy()
        out[name] = round(float(spearmanr(z, true_p)[0]), 4)
    return out


def main() -> None:
    args = parse()
    torch.set_num_threads(args.threads)
    users = [int(u) for u in args.users.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="seqrec-simtruth-") as tmp:
        for n in users:
            for s in seeds:
                rows.append(run(n, s, args.pairs, Path(tmp)))
                print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    cmd = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    print(f"`{cmd}` — {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}, torch {torch.__version__}, {args.threads} thread(s)\n")
    print("| users | truth seed | events | simulator (random pairs) | simulator (logged items) "
          "| reference: category form | reference: known preference | simulator fit s |")
    print("|---:|---:|---:|---|---|---|---|---:|")
    for r in rows:
        print(f"| {r['users']:,} | {r['seed']} | {r['events']:,} | {r['simulator']:.3f} | {r['simulator_logged']:.3f} "
              f"| {r['category_form']:.3f} | {r['known_preference']:.3f} | {r['fit_s']} |")
    for n in users:
        sub = [r for r in rows if r["users"] == n]
        print(f"\n{n:,} users, mean over seeds: simulator {np.mean([r['simulator'] for r in sub]):.3f}, "
              f"category form {np.mean([r['category_form'] for r in sub]):.3f}, "
              f"known preference {np.mean([r['known_preference'] for r in sub]):.3f}", end="")
    print()


if __name__ == "__main__":
    main()
