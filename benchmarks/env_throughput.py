"""Env throughput: single env vs the batched env, and candidates mode vs catalogue size.

    python benchmarks/env_throughput.py --bundle runs/ml100k [--threads 2] [--seconds 5] [--repeats 2]

Part 1 steps the ML-100K bundle with the CNN+GNN encoder in the loop (embedding
observations, random item actions): the single env (``gymnasium.make``, TimeLimit and
checker wrappers included) and the batched env at N = 1, 16, 64, 256; then the single env
of the embedded default (``gymnasium.make("SeqRec-v0")``, no bundle), and RecoGym's single
env beside it when ``recogym`` is importable (the output says so when it is not). Each
configuration runs ``--repeats`` times and keeps its best run (shared machines are noisy).
Part 2 measures the step time of ``action_mode="candidates"`` (K = 20) at 1k, 10k, 100k and
1M items: a catalogue of M items is synthesised by giving the bundle's encoder M random
item embeddings and letting item ``i`` respond in the simulator as fitted item
``i mod n_items`` (retrieval is what grows with M; the response model only sees shown items).
Each configuration runs in its own process, so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch


class TiledSimulator:
    """A fitted simulator seen through a catalogue of ``n_items`` ids (item i acts as i mod n)."""

    def __init__(self, sim, n_items: int):
        self.sim, self.n_items = sim, n_items
        self.behaviour_names, self.max_history = sim.behaviour_names, sim.max_history

    def _map(self, items):
        return items % self.sim.n_items

    def initial_state(self, users, history, behaviours=None):
        return self.sim.initial_state(users, torch.where(history >= 0, history % self.sim.n_items, history), behaviours)

    def click_probability(self, state, items):
        return self.sim.click_probability(state, self._map(items))

    def step(self, state, items, generator=None, *, noise=None):
        return self.sim.step(state, self._map(items), generator, noise=noise)


def _measure(step, seconds: float) -> tuple[int, float]:
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        n += step()
    return n, time.perf_counter() - t0


def run_one(kind: str, n: int, bundle_path: str, seconds: float, threads: int) -> dict:
    import gymnasium as gym
    import torch

    import seqrec  # noqa: F401
    from seqrec.envs.bundle import Bundle
    from seqrec.envs.vector_env import SeqRecVectorEnv

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    if kind == "recogym":
        return _recogym(seconds)
    bundle = Bundle.load(bundle_path) if kind != "single-default" else None
    if kind in ("single", "single-default"):
        env = gym.make("SeqRec-v0", bundle=bundle)
        env.reset(seed=0)

        def step() -> int:
            _, _, term, trunc, _ = env.step(int(rng.integers(env.action_space.n)))
            if term or trunc:
                env.reset()
            return 1

    else:
        options = {}
        if kind == "candidates":
            from seqrec.encoders.config import EncoderConfig
            from seqrec.encoders.model import SequenceEncoder

            cfg = EncoderConfig.from_dict({**bundle.encoder.config.to_dict(), "n_items": n})
            torch.manual_seed(0)
            bundle.encoder = SequenceEncoder(cfg).eval()
            bundle.simulator = TiledSimulator(bundle.simulator, n)
            bundle.seq.n_items = n
            bundle.seq.items = bundle.seq.items % n  # logged histories stay inside the catalogue
            options = {"action_mode": "candidates", "n_candidates": 20}
        batch = 64 if kind == "candidates" else n
        venv = SeqRecVectorEnv(num_envs=batch, bundle=bundle, **options)
        venv.reset(seed=0)
        high = venv.single_action_space.n

        def step() -> int:
            venv.step(rng.integers(0, high, batch))
            return batch

    for _ in range(3):
        step()  # warm-up
    steps, secs = _measure(step, seconds)
    per_call = 1 if kind.startswith("single") else (64 if kind == "candidates" else n)
    return {"kind": kind, "n": n, "steps_per_s": steps / secs, "ms_per_step_call": 1000 * secs / (steps / per_call),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip


def _recogym(seconds: float) -> dict:
    """RecoGym's single env (``reco-gym-v1``, default ``env_1_args``), random actions."""
    import gym  # RecoGym is built on the pre-Gymnasium ``gym`` package
    import recogym

    env = gym.make("reco-gym-v1")
    env.init_gym(recogym.env_1_args)
    env.reset()
    rng = np.random.default_rng(0)

    def step() -> int:
        _, _, done, _ = env.step(int(rng.integers(recogym.env_1_args["num_products"])))
        if done:
            env.reset()
        return 1

    steps, secs = _measure(step, seconds)
    return {"kind": "recogym", "n": 1, "steps_per_s": steps / secs, "ms_per_step_call": 1000 * secs / steps,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _run(kind: str, n: int, args: argparse.Namespace) -> dict:
    """The best of ``args.repeats`` runs of one configuration, each in a fresh process."""
    cmd = [sys.executable, __file__, "--bundle", args.bundle, "--seconds", str(args.seconds), "--threads", str(args.threads), "--one", kind, str(n)]
    runs = [json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]) for _ in range(args.repeats)]
    return max(runs, key=lambda r: r["steps_per_s"])


def _recogym_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("recogym") is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="runs per configuration; the best is kept")
    parser.add_argument("--skip-candidates", action="store_true", help="part 1 only")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], int(args.one[1]), args.bundle, args.seconds, args.threads)))
        return
    configs = [("single", 1)] + [("batched", n) for n in (1, 16, 64, 256)] + [("single-default", 1)]
    recogym = _recogym_importable()
    configs += [("recogym", 1)] if recogym else []
    candidates = [] if args.skip_candidates else [("candidates", m) for m in (1_000, 10_000, 100_000, 1_000_000)]
    rows = []
    for kind, n in configs + candidates:
        rows.append(_run(kind, n, args))
        print(rows[-1], file=sys.stderr)
    single = rows[0]["steps_per_s"]
    print(f"`python benchmarks/env_throughput.py --bundle {args.bundle} --threads {args.threads}` — {dt.date.today()}, best of {args.repeats}\n")
    print("| env | N | steps/s | × single | peak RSS (MB) |\n|---|---:|---:|---:|---:|")
    names = {"single": "single (`gymnasium.make`, wrappers included)", "batched": "batched",
             "single-default": "single, embedded default (`gymnasium.make(\"SeqRec-v0\")`)", "recogym": "RecoGym single (`reco-gym-v1`)"}
    for r in rows[: len(configs)]:
        print(f"| {names[r['kind']]} | {r['n']} | {r['steps_per_s']:,.0f} | {r['steps_per_s'] / single:.1f} | {r['peak_rss_mb']:.0f} |")
    if not recogym:
        print("\nRecoGym: not importable here (`pip install recogym`), so no RecoGym row.")
    if candidates:
        cand = rows[len(configs):]
        base = cand[0]["ms_per_step_call"]
        print("\n| candidates mode (K = 20, batch 64) | items | ms per batched step | × 1k items | peak RSS (MB) |\n|---|---:|---:|---:|---:|")
        for r in cand:
            print(f"| candidates | {r['n']:,} | {r['ms_per_step_call']:.2f} | {r['ms_per_step_call'] / base:.2f} | {r['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
