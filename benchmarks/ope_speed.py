"""Time every off-policy estimator of seqrec.ope.estimators on one large synthetic log.

    python benchmarks/ope_speed.py                      # n=100,000 rounds, 1,000 actions
    python benchmarks/ope_speed.py --n-rounds 20000     # smaller

Prints a markdown table (estimator, point-estimate seconds, interval seconds), with the
command, date and machine, for benchmarks/README.md. Times are the median of
``--repeats`` calls of the public methods, input validation included. The two
``(n_rounds, n_actions, 1)`` float64 arrays take ``16 * n_rounds * n_actions`` bytes
(1.6 GB at the defaults).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass

import numpy as np

from seqrec.ope.estimators import (
    BaseOffPolicyEstimator,
    DirectMethod,
    DoublyRobust,
    InverseProbabilityWeighting,
    Replay,
    SelfNormalizedIPS,
    SwitchDoublyRobust,
)


@dataclass
class Args:
    n_rounds: int = 100_000
    """number of logged rounds"""
    n_actions: int = 1000
    """size of the action set"""
    n_bootstrap_samples: int = 2000
    """bootstrap resamples for estimate_interval"""
    repeats: int = 3
    """timed calls per method; the median is reported"""
    seed: int = 0
    """seed of the synthetic log and of the bootstrap"""


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for field in dataclasses.fields(Args):
        parser.add_argument(
            f"--{field.name.replace('_', '-')}", type=int, default=field.default, help=f"(default {field.default})"
        )
    return Args(**vars(parser.parse_args()))


def make_log(args: Args) -> dict[str, np.ndarray]:
    """A uniform-logging log with a softmax target policy and a random reward model."""
    rng = np.random.default_rng(args.seed)
    n, k = args.n_rounds, args.n_actions
    action_dist = rng.random((n, k, 1))
    np.exp(4 * action_dist, out=action_dist)
    action_dist /= action_dist.sum(axis=1, keepdims=True)
    estimated = rng.random((n, k, 1))
    action = rng.integers(0, k, n)
    return dict(
        reward=rng.binomial(1, estimated[np.arange(n), action, 0]).astype(np.float64),
        action=action,
        pscore=np.full(n, 1.0 / k),
        action_dist=action_dist,
        estimated_rewards_by_reg_model=estimated,
    )


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


if __name__ == "__main__":
    args = parse_args()

    # SETUP
    start = time.perf_counter()
    log = make_log(args)
    setup_s = time.perf_counter() - start
    estimators: list[BaseOffPolicyEstimator] = [
        DirectMethod(),
        InverseProbabilityWeighting(),
        InverseProbabilityWeighting(lambda_=100.0, estimator_name="ips (lambda_=100)"),
        SelfNormalizedIPS(),
        DoublyRobust(),
        SwitchDoublyRobust(lambda_=100.0),
        Replay(),
    ]

    # TIMING
    rows = []
    for est in estimators:
        point_s = median_seconds(lambda: est.estimate_policy_value(**log), args.repeats)
        interval_s = median_seconds(
            lambda: est.estimate_interval(
                **log, n_bootstrap_samples=args.n_bootstrap_samples, random_state=args.seed
            ),
            args.repeats,
        )
        value = est.estimate_policy_value(**log)
        rows.append((est.estimator_name, point_s, interval_s, value))
        print(f"{est.estimator_name}: {point_s:.3f} s, interval {interval_s:.3f} s", file=sys.stderr)

    # REPORT
    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/ope_speed.py", *sys.argv[1:]])
    print(f"`{command}` — {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print()
    print(
        f"n_rounds={args.n_rounds:,}, n_actions={args.n_actions:,}, float64, "
        f"n_bootstrap_samples={args.n_bootstrap_samples}, median of {args.repeats}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, numpy {np.__version__} (log generated in {setup_s:.1f} s)"
    )
    print()
    print("| estimator | estimate_policy_value (s) | estimate_interval (s) | estimate |")
    print("|---|---:|---:|---:|")
    for name, point_s, interval_s, value in rows:
        print(f"| {name} | {point_s:.3f} | {interval_s:.3f} | {value:.4f} |")
