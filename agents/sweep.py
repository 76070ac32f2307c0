"""``seqrec sweep``: a grid (and optionally a Tune search space) of ``seqrec train`` runs on Ray Tune.

A spec (YAML or TOML) names the options every trial shares, the grid, and optionally a search:

.. code-block:: yaml

    base:                      # any seqrec train option (TrainConfig)
      timesteps: 20000
      n_envs: 16
    grid:                      # every combination of these lists is one configuration
      algo: [ppo, a2c]
      seed: [0, 1, 2, 3]       # the summary's mean and 95 % CI are over the seeds of a configuration
      bundle: [runs/ml100k]
    search:                    # optional: Tune draws these num_samples times per grid point
      algorithm: random        # random (Tune's variant generator) or a Tune searcher name (optuna, hyperopt, ...)
      num_samples: 4
      space:
        learning_rate: {loguniform: [1.0e-4, 1.0e-2]}
    evaluation: {episodes: 200, seed: 0}

Each trial is the SB3 trainer (:func:`seqrec.agents.train.train`) writing an ordinary run folder,
``OUT/runs/<trial>`` (``seqrec evaluate OUT/runs/*`` compares them), then seqrec's online
evaluation of its final model on the same seeded users for every trial (``trial.json``).
Fault tolerance is Tune's (``FailureConfig``) with the run folders as the storage: a retried
trial resumes from its newest SB3 checkpoint. A re-run of the same command restores the Tune
experiment (``OUT/.tune``) and skips finished trials; ``OUT/summary.json`` and
``OUT/summary.png`` hold the table. Every node must see ``OUT`` and the bundles at the same
paths (one machine, or a shared file system).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seqrec.agents.ray_cluster import check_nodes_see, connect_ray
from seqrec.agents.sweep_spec import SweepSpec, load_spec, trial_config, trial_name
from seqrec.infra.atomic import write_json_atomic
from seqrec.infra.errors import SeqrecError

TRIAL_FILE = "trial.json"
ATTEMPTS_FILE = "attempts.jsonl"


@dataclass
class SweepContext:
    """What every trial needs besides its own options (sent to the workers once)."""

    spec: SweepSpec
    root: str
    """Absolute sweep folder (``OUT``)."""


def run_trial(config: dict[str, Any], context: SweepContext) -> None:
    """The Tune trainable: train (or resume) one run folder, evaluate its final model, report.

    ``config`` holds ``point`` (the grid combination) and the sampled search values. A finished
    trial (``trial.json`` present) is reported again without training.
    """
    from ray import tune

    point = dict(config.get("point", {}))
    sampled = {k: _plain(v) for k, v in config.items() if k != "point"}
    params = {**point, **sampled}
    folder = Path(context.root) / "runs" / trial_name(params)
    if (folder / TRIAL_FILE).exists():
        result = json.loads((folder / TRIAL_FILE).read_text())
    else:
        result = _train_and_score(context.spec, point, sampled, folder)
    tune.report({k: v for k, v in result.items() if isinstance(v, (int, float))})


def _plain(v: Any) -> Any:
    """NumPy scalars from Tune's samplers as plain Python numbers (for JSON and TrainConfig)."""
    return v.item() if isinstance(v, np.generic) else v


def _train_and_score(spec: SweepSpec, point: dict, sampled: dict, folder: Path) -> dict[str, Any]:
    from seqrec.agents.evaluation import EvalConfig, evaluate_policy
    from seqrec.agents.policies import SB3Policy
    from seqrec.agents.train import latest_checkpoint, load_agent, train
    from seqrec.envs.bundle import load_bundle

    cfg = trial_config(spec, point, sampled, folder)
    resume = (folder / "config.json").exists()
    ckpt = latest_checkpoint(folder) if resume else None
    _log_attempt(folder, from_step=int(ckpt.name.split("_")[1]) if ckpt is not None else 0)
    t0 = time.perf_counter()
    run = train(cfg, resume=resume, progress=False)
    seconds = time.perf_counter() - t0
    model, saved = load_agent(run, which="final")
    ev = evaluate_policy(SB3Policy(model, name=run.name), load_bundle(saved.bundle), saved.env_options(),
                         EvalConfig(episodes=spec.evaluation.episodes, seed=spec.evaluation.seed))  # fmt: skip
    attempts = [json.loads(line) for line in (folder / ATTEMPTS_FILE).read_text().splitlines() if line.strip()]
    result = {"trial": run.name, "params": {**point, **sampled}, "mean_return": ev["mean_return"], "return_ci95": ev["return_ci95"],
              "ctr": ev["ctr"], "mean_length": ev["mean_length"], "timesteps": int(model.num_timesteps),
              "train_s": seconds, "attempts": attempts}  # fmt: skip
    write_json_atomic(folder / TRIAL_FILE, result)
    return result


def _log_attempt(folder: Path, from_step: int) -> None:
    """One line per start of this trial (``pid``, node, the step it resumed from): a retried trial shows it."""
    import ray

    folder.mkdir(parents=True, exist_ok=True)
    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    with open(folder / ATTEMPTS_FILE, "a") as fh:
        fh.write(json.dumps({"pid": os.getpid(), "node": node, "from_step": from_step, "time": time.time()}) + "\n")


# ---------------------------------------------------------------------------------------------- driver
@dataclass
class SweepOptions:
    """``seqrec sweep`` options besides the spec."""

    out: str = "sweep"
    """Sweep folder: ``runs/<trial>``, ``summary.json``, ``summary.png``, ``.tune`` (Tune's experiment state)."""
    address: str | None = None
    """Ray cluster (``auto`` or ``HOST:PORT``); None starts a local Ray on this machine."""
    cpus_per_trial: float = 1.0
    """CPUs Tune reserves per trial (the trial trains on TrainConfig.threads torch threads)."""
    max_failures: int = 3
    """Retries of a trial whose worker died (each resumes from the trial's newest checkpoint)."""


def run_sweep(spec_path: str | Path, options: SweepOptions = SweepOptions(), progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the sweep; write and return the summary (see :func:`summarize`)."""
    spec = load_spec(spec_path)
    if not options.cpus_per_trial > 0:
        raise SeqrecError(f"--cpus-per-trial must be > 0, not {options.cpus_per_trial}")
    root = Path(options.out).resolve()
    spec = _absolute_bundles(spec, progress)
    _check_same_spec(root, spec)
    ray = connect_ray(options.address)
    check_nodes_see(ray, [root] + sorted({Path(b) for b in _bundles(spec)}))
    t0 = time.perf_counter()
    results = _fit(spec, root, options, progress)
    summary = summarize(spec, results, wall_s=time.perf_counter() - t0)
    write_json_atomic(root / "summary.json", summary)
    plot_summary(summary, root / "summary.png")
    return summary


def _absolute_bundles(spec: SweepSpec, progress: bool) -> SweepSpec:
    """Bundle paths made absolute (relative ones from the current folder); no bundle: the default one's path."""
    def fix(b):
        if b is None:
            from seqrec.envs.bundle import default_bundle

            return str(default_bundle(progress=progress))
        return str(Path(b).resolve())

    base = dict(spec.base)
    grid = dict(spec.grid)
    if "bundle" in grid:
        grid["bundle"] = [fix(b) for b in grid["bundle"]]
    else:
        base["bundle"] = fix(base.get("bundle"))
    return SweepSpec(base=base, grid=grid, search=spec.search, evaluation=spec.evaluation)


def _bundles(spec: SweepSpec) -> list[str]:
    return list(spec.grid.get("bundle", [spec.base.get("bundle")]))


def _check_same_spec(root: Path, spec: SweepSpec) -> None:
    """``OUT/spec.json`` records the spec; a re-run with another spec into the same folder is refused."""
    record = root / "spec.json"
    current = json.loads(json.dumps(asdict(spec), default=str))
    if record.exists():
        if json.loads(record.read_text()) != current:
            raise SeqrecError(f"{root} holds a sweep of another spec ({record}); pass another --out, or the same spec to resume")
        return
    root.mkdir(parents=True, exist_ok=True)
    write_json_atomic(record, current)


def _param_space(spec: SweepSpec, todo: list[dict]) -> dict[str, Any]:
    from ray import tune

    space: dict[str, Any] = {"point": tune.grid_search(todo)}
    if spec.search is not None:
        makers = {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint, "choice": lambda *v: tune.choice(list(v))}
        for name, dist in spec.search.space.items():
            kind, args = next(iter(dist.items()))
            space[name] = makers[kind](*args)
    return space


def _searcher(spec: SweepSpec):
    """None for random search (Tune's default variant generator); else the named Tune searcher."""
    if spec.search is None or spec.search.algorithm == "random":
        return None
    from ray import tune

    if len(spec.points()) > 1:
        raise SeqrecError(f"search algorithm {spec.search.algorithm!r} does not take a grid; use algorithm 'random' or no grid")
    try:
        return tune.create_searcher(spec.search.algorithm, metric=spec.search.metric, mode="max")
    except (ValueError, ImportError, AssertionError) as err:
        raise SeqrecError(f"search algorithm {spec.search.algorithm!r}: {(str(err).splitlines() or [type(err).__name__])[0]}") from None


def _fit(spec: SweepSpec, root: Path, options: SweepOptions, progress: bool) -> list[dict[str, Any]]:
    """Tune runs the trials that have no ``trial.json`` yet; returns every trial's result."""
    from ray import tune

    searcher = _searcher(spec)  # checked before anything starts
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # no experiment banner: seqrec prints its own progress and table
    trainable = tune.with_resources(tune.with_parameters(run_trial, context=SweepContext(spec, str(root))), {"cpu": options.cpus_per_trial})
    storage = root / ".tune"
    finished = _finished(root)
    todo = [p for p in spec.points() if spec.search is not None or trial_name(p) not in finished]
    if todo:
        callbacks = [_progress_callback(len(todo) * (spec.search.num_samples if spec.search else 1))] if progress else []
        run_config = tune.RunConfig(name="sweep", storage_path=str(storage), verbose=0, callbacks=callbacks,
                                    failure_config=tune.FailureConfig(max_failures=options.max_failures))  # fmt: skip
        if spec.search is not None and tune.Tuner.can_restore(str(storage / "sweep")):
            tuner = tune.Tuner.restore(str(storage / "sweep"), trainable=trainable, resume_errored=True)
        else:
            tune_config = tune.TuneConfig(num_samples=spec.search.num_samples if spec.search else 1, search_alg=searcher,
                                          metric=spec.search.metric if searcher else None, mode="max" if searcher else None)  # fmt: skip
            tuner = tune.Tuner(trainable, param_space=_param_space(spec, todo), tune_config=tune_config, run_config=run_config)
        grid = tuner.fit()
        errors = [r.error for r in grid if r.error is not None]
        if errors:
            raise SeqrecError(f"{len(errors)} trial(s) failed after {options.max_failures} retries: {_first_line(errors[0])}")
    return [json.loads((root / "runs" / name / TRIAL_FILE).read_text()) for name in sorted(_finished(root))]


def _first_line(err: BaseException) -> str:
    """The innermost one-line reason of a Tune trial error (a SeqrecError raised in the trial, if any)."""
    cause = getattr(err, "cause", None) or err
    text = str(cause).strip().splitlines()
    picked = [line for line in text if "SeqrecError" in line or "Error:" in line]
    return (picked[-1] if picked else text[0] if text else type(cause).__name__).strip()


def _finished(root: Path) -> set[str]:
    return {p.parent.name for p in (root / "runs").glob(f"*/{TRIAL_FILE}")}


def _progress_callback(total: int):
    """A Tune callback counting finished trials on :func:`seqrec.infra.progress.progress`."""
    from ray import tune

    from seqrec.infra.progress import progress

    class TrialProgress(tune.Callback):
        def __init__(self) -> None:
            self.bar = progress(total=total, desc="sweep", unit="trial")

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            self.bar.update(1)

        def on_experiment_end(self, trials, **info) -> None:
            self.bar.close()

    return TrialProgress()


# ---------------------------------------------------------------------------------------------- summary
def summarize(spec: SweepSpec, results: list[dict[str, Any]], wall_s: float | None = None) -> dict[str, Any]:
    """Mean and 95 % CI (Student t over seeds) of each configuration's final return.

    A configuration is a trial's options less ``seed``; ``per_seed`` lists every trial's return.
    """
    from scipy import stats

    groups: dict[str, list[dict]] = {}
    for r in results:
        config = {k: v for k, v in r["params"].items() if k != "seed"}
        groups.setdefault(json.dumps(config, sort_keys=True, default=str), []).append(r)
    rows = []
    for key, trials in groups.items():
        returns = np.array([t["mean_return"] for t in trials], dtype=np.float64)
        n = len(returns)
        half = float(stats.t.ppf(0.975, n - 1) * returns.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
        rows.append({"config": json.loads(key), "seeds": [t["params"].get("seed") for t in trials], "n": n,
                     "mean_return": float(returns.mean()), "ci95": [float(returns.mean() - half), float(returns.mean() + half)],
                     "ctr": float(np.mean([t["ctr"] for t in trials])), "train_s": float(np.mean([t["train_s"] for t in trials])),
                     "per_seed": {str(t["params"].get("seed")): t["mean_return"] for t in trials}})  # fmt: skip
    rows.sort(key=lambda r: -r["mean_return"])
    return {"evaluation": asdict(spec.evaluation), "wall_s": wall_s, "configurations": rows, "trials": results}


def config_label(config: dict[str, Any]) -> str:
    return trial_name(config) if config else "all"


def summary_rows(summary: dict[str, Any]) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """(header, rows) of the summary table: best configuration first."""
    header = ("configuration", "seeds", "return (mean ± 95% CI over seeds)", "CTR", "train s")
    rows = []
    for r in summary["configurations"]:
        lo, hi = r["ci95"]
        ci = f"± {(hi - lo) / 2:.3f}" if np.isfinite(lo) else "(one seed)"
        rows.append((config_label(r["config"]), str(r["n"]), f"{r['mean_return']:.3f} {ci}", f"{r['ctr']:.3f}", f"{r['train_s']:.0f}"))
    return header, rows


def plot_summary(summary: dict[str, Any], path: Path) -> Path:
    """Horizontal bars: each configuration's mean return with its 95 % CI, and every seed as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary["configurations"][::-1]  # best on top
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(rows) + 1.5))
    names = [config_label(r["config"]) for r in rows]
    means = np.array([r["mean_return"] for r in rows])
    err = np.array([[m - r["ci95"][0], r["ci95"][1] - m] for m, r in zip(means, rows)]).T
    ax.barh(names, means, xerr=np.nan_to_num(err), capsize=3, color="tab:blue", alpha=0.7)
    for i, r in enumerate(rows):
        vals = list(r["per_seed"].values())
        ax.plot(vals, [i] * len(vals), "k.", ms=5)
    ax.set_xlabel(f"final evaluation return ({summary['evaluation']['episodes']} users; mean, 95% CI over seeds, dots: seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
