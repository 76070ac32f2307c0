"""Scale-out on Ray (issue 16): a sweep against serial runs, and RLlib PPO against the baselines.

    python benchmarks/sweep.py [--bundle DIR] [--timesteps 100000] [--seeds 4] [--ray-cpus 2]
                               [--rllib-timesteps 300000] [--num-env-runners 1] [--episodes 1000] [--out bench-sweep]

Part 1 (target: sweep wall <= 0.65x serial, same per-seed results): ``seqrec sweep`` of
``--seeds`` PPO seeds on a local Ray of ``--ray-cpus`` CPUs (one CPU per trial; Ray's start
included in the time), then the same ``seqrec train`` commands one after another, each its own
process; both scored by the sweep's evaluation (``--episodes`` users, seed 0) on the final model.
Part 2 (target: RLlib PPO beats random and greedy with non-overlapping 95 % CIs within 15
CPU-minutes, CPU-minutes = wall x (env runners + 1 driver)): ``seqrec train --engine rllib``,
then ``seqrec evaluate`` against random and greedy in the run's env; its sampling throughput
(env steps/s per env runner, from ``engine.json``) beside SB3's on the same bundle and env
(rollout collection timed inside SB3 PPO's ``learn``, ``n_envs`` users, one thread).
Writes ``OUT/sweep_bench.json``; prints markdown rows for ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")


def _seqrec(*args: str) -> float:
    """Run ``seqrec ARGS`` in its own process; its wall seconds."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "seqrec.cli.main", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _score(run: Path, episodes: int) -> float:
    from seqrec.agents.evaluation import EvalConfig, evaluate_policy
    from seqrec.agents.policies import SB3Policy
    from seqrec.agents.train import load_agent
    from seqrec.envs.bundle import load_bundle

    model, cfg = load_agent(run, which="final")
    return evaluate_policy(SB3Policy(model), load_bundle(cfg.bundle), cfg.env_options(), EvalConfig(episodes=episodes, seed=0))["mean_return"]


def sweep_vs_serial(a: argparse.Namespace, out: Path) -> dict:
    import ray
    import yaml

    from seqrec.agents.sweep import SweepOptions, run_sweep

    base = {"algo": "ppo", "timesteps": a.timesteps, "threads": 1, **({"bundle": a.bundle} if a.bundle else {})}
    spec = out / "spec.yaml"
    spec.write_text(yaml.safe_dump({"base": base, "grid": {"seed": list(range(a.seeds))}, "evaluation": {"episodes": a.episodes, "seed": 0}}))
    t0 = time.perf_counter()
    ray.init(num_cpus=a.ray_cpus, include_dashboard=False, log_to_driver=False)
    summary = run_sweep(spec, SweepOptions(out=str(out / "sweep"), cpus_per_trial=1), progress=True)
    sweep_s = time.perf_counter() - t0
    ray.shutdown()
    bundle_args = ["--bundle", a.bundle] if a.bundle else []
    serial_s, serial = 0.0, {}
    for seed in range(a.seeds):
        run = out / "serial" / f"seed{seed}"
        serial_s += _seqrec("train", "--algo", "ppo", "--timesteps", str(a.timesteps), "--seed", str(seed), "--out", str(run), *bundle_args)
        serial[str(seed)] = _score(run, a.episodes)
    swept = summary["configurations"][0]["per_seed"]
    return {"sweep_s": sweep_s, "serial_s": serial_s, "ratio": sweep_s / serial_s, "per_seed_sweep": swept, "per_seed_serial": serial,
            "same_results": all(np.isclose(swept[s], serial[s]) for s in serial)}  # fmt: skip


def sb3_sampling_rate(bundle: str | None, n_envs: int, steps: int, action_mode: str) -> float:
    """Env steps/s during SB3 PPO's rollout collection (learning excluded), one process, one thread."""
    import torch
    from stable_baselines3.common.callbacks import BaseCallback

    from seqrec.agents.train import TrainConfig, build_model, make_vec_env

    torch.set_num_threads(1)

    class RolloutClock(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds, self.t0 = 0.0, 0.0

        def _on_rollout_start(self) -> None:
            self.t0 = time.perf_counter()

        def _on_rollout_end(self) -> None:
            self.seconds += time.perf_counter() - self.t0

        def _on_step(self) -> bool:
            return True

    cfg = TrainConfig(algo="ppo", bundle=bundle, n_envs=n_envs, action_mode=action_mode, out="/tmp/seqrec-sb3-rate")
    model = build_model(cfg, make_vec_env(cfg, n_envs, 0), Path("/tmp/seqrec-sb3-rate/tb"))
    clock = RolloutClock()
    model.learn(steps, callback=clock)
    return model.num_timesteps / clock.seconds


def rllib_vs_baselines(a: argparse.Namespace, out: Path) -> dict:
    bundle_args = ["--bundle", a.bundle] if a.bundle else []
    run = out / "rllib-ppo"
    wall = _seqrec("train", "--engine", "rllib", "--algo", "ppo", "--action-mode", a.action_mode, "--timesteps", str(a.rllib_timesteps),
                   "--num-env-runners", str(a.num_env_runners), "--out", str(run), *bundle_args)  # fmt: skip
    _seqrec("evaluate", str(run), "--baselines", "random,greedy", "--episodes", str(a.episodes), "--out", str(out / "rllib-eval"))
    results = {r["policy"]: r for r in json.loads((out / "rllib-eval" / "results.json").read_text())["tables"][0]["results"]}
    agent = next(r for name, r in results.items() if name not in ("random", "greedy"))
    beats = all(agent["return_ci95"][0] > results[b]["return_ci95"][1] for b in ("random", "greedy"))
    engine = json.loads((run / "engine.json").read_text())
    cfg = json.loads((run / "config.json").read_text())
    sb3 = sb3_sampling_rate(cfg["bundle"], cfg["n_envs"], a.sb3_rate_steps, a.action_mode)
    cpu_min = wall * (a.num_env_runners + 1) / 60
    return {"train_wall_s": wall, "cpu_minutes": cpu_min, "within_15_cpu_min": cpu_min <= 15, "beats_random_and_greedy": beats,
            "returns": {k: [v["mean_return"], *v["return_ci95"]] for k, v in results.items()},
            "rllib_env_steps_per_s_per_runner": engine["env_steps_per_s_per_runner"], "sb3_env_steps_per_s": sb3}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", default=None, help="bundle folder (default: the synthetic default bundle)")
    p.add_argument("--timesteps", type=int, default=100_000, help="PPO steps per seed (part 1)")
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--ray-cpus", type=int, default=2, help="CPUs of the local Ray (part 1)")
    p.add_argument("--rllib-timesteps", type=int, default=300_000, help="RLlib PPO steps (part 2)")
    p.add_argument("--num-env-runners", type=int, default=1)
    p.add_argument("--action-mode", default="item", help="RLlib and SB3-rate action mode (item: encoder-initialised head, masked)")
    p.add_argument("--sb3-rate-steps", type=int, default=16_384, help="SB3 steps timed for its sampling rate")
    p.add_argument("--episodes", type=int, default=1000, help="evaluation users per policy")
    p.add_argument("--out", default="bench-sweep")
    p.add_argument("--skip", choices=["sweep", "rllib"], default=None, help="run one part only")
    a = p.parse_args()
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    res = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "args": vars(a)}
    if a.skip != "sweep":
        res["sweep"] = s = sweep_vs_serial(a, out)
        print(f"| sweep of {a.seeds} PPO seeds, {a.timesteps:,} steps | {s['sweep_s']:.0f} s | serial {s['serial_s']:.0f} s | "
              f"ratio {s['ratio']:.2f} (target <= 0.65) | same per-seed results: {s['same_results']} |")  # fmt: skip
    if a.skip != "rllib":
        res["rllib"] = r = rllib_vs_baselines(a, out)
        print(f"| RLlib PPO {a.rllib_timesteps:,} steps, {a.num_env_runners} runner(s) | {r['train_wall_s']:.0f} s "
              f"({r['cpu_minutes']:.1f} CPU-min) | beats random and greedy: {r['beats_random_and_greedy']} | "
              f"{r['rllib_env_steps_per_s_per_runner'] or float('nan'):.0f} env steps/s per runner vs SB3 {r['sb3_env_steps_per_s']:.0f} |")  # fmt: skip
        for name, (m, lo, hi) in r["returns"].items():
            print(f"|   {name} | {m:.3f} [{lo:.3f}, {hi:.3f}] |")
    (out / "sweep_bench.json").write_text(json.dumps(res, indent=2, default=str))


if __name__ == "__main__":
    main()
