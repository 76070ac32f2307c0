"""``seqrec prepare | train | evaluate | demo``: the research workflow from the shell.

``evaluate`` puts every policy of one table in the same env: a trained run's own env
options (action mode, candidates, reward weights, episode length, observation), and the
baselines in that same env. Runs trained with different env options get one table each.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional

import typer

from seqrec.agents.evaluation import EvalConfig
from seqrec.agents.train import TrainConfig
from seqrec.agents.rllib_engine import DEFAULT_ENGINE, ENGINES, RLlibConfig
from seqrec.cli.options import COLUMNS, DEBIAS, DEVICE, FORMAT, MIN_VALUE, POSITIVE, SEP, default_of
from seqrec.cli.output import console, show_table
from seqrec.data.preprocess import PrepConfig
from seqrec.encoders.config import EncoderConfig, PretrainConfig
from seqrec.envs.bundle import BuildConfig
from seqrec.simulators.config import SimulatorConfig

_T = lambda name: default_of(TrainConfig, name)  # noqa: E731


def prepare_command(
    data: Path = typer.Argument(..., help="A log file or dataset folder (see `seqrec data`)."),
    out: Path = typer.Option(..., "--out", help="Bundle folder to write."),
    format: Optional[str] = FORMAT,
    columns: Optional[str] = COLUMNS,
    sep: Optional[str] = SEP,
    min_value: Optional[float] = MIN_VALUE,
    positive: Optional[str] = POSITIVE,
    encoder: str = typer.Option(default_of(EncoderConfig, "encoder"), "--encoder", help="cnn | gnn | cnn+gnn."),
    epochs: int = typer.Option(default_of(PretrainConfig, "epochs"), "--epochs", help="Encoder pretraining epochs (early stopping may end sooner)."),
    seed: int = typer.Option(default_of(BuildConfig, "seed"), "--seed", help="Seed of pretraining and simulator fitting."),
    precision: str = typer.Option(default_of(PretrainConfig, "precision"), "--precision", help="Encoder pretraining step: auto | fp32 | bf16 (see `seqrec pretrain --help`)."),
    base_click_rate: Optional[float] = typer.Option(default_of(SimulatorConfig, "base_click_rate"), "--base-click-rate",
                                                    help="Logs without impressions: P(click) of a random never-touched item (not identifiable from such a log)."),
    allow_weak_simulator: bool = typer.Option(default_of(BuildConfig, "allow_weak_simulator"), "--allow-weak-simulator",
                                              help="Build even when the simulator is no better than popularity (recorded in bundle.json; every load warns)."),
    time_budget: Optional[float] = typer.Option(default_of(BuildConfig, "time_budget_s"), "--time-budget",
                                                help="Seconds the whole build may take; a large log's epochs are subsampled to fit (recorded in bundle.json). 0: no budget."),
    threads: int = typer.Option(default_of(PretrainConfig, "threads"), "--threads",
                                help="torch CPU threads (1 suits a shared machine; raise it on idle cores)."),
    device: str = DEVICE,
    debias: str = DEBIAS,
) -> None:
    """Build a bundle: prepared data, pretrained encoder, fitted simulator, fidelity report.

    Stops with a one-line reason when the simulator cannot tell policies apart (click AUC
    not above the popularity baseline's on the same held-out pairs, or a constant P(click)).
    """
    from seqrec.envs.bundle import build_bundle

    cfg = BuildConfig(format=format, columns=columns, sep=sep, prep=PrepConfig(min_value=min_value, positive=positive), encoder={"encoder": encoder},
                      pretrain=PretrainConfig(epochs=epochs, seed=seed, precision=precision, threads=threads, device=device),  # type: ignore[arg-type]
                      simulator=SimulatorConfig(seed=seed, base_click_rate=base_click_rate, device=device, debias=debias), seed=seed,  # type: ignore[arg-type]
                      allow_weak_simulator=allow_weak_simulator, time_budget_s=time_budget or None)  # fmt: skip
    t0 = time.perf_counter()
    path = build_bundle(data, out, cfg)
    console.print(f"bundle written to [bold]{path}[/] in {time.perf_counter() - t0:.0f} s")


def train_command(
    algo: Optional[str] = typer.Option(None, "--algo", help=f"ppo | a2c | dqn | qrdqn | sac | td3 | maskable-ppo (default {_T('algo')})."),
    bundle: Optional[str] = typer.Option(None, "--bundle", help="Bundle folder (default: the synthetic default bundle)."),
    timesteps: Optional[int] = typer.Option(None, "--timesteps", help=f"Total environment steps (default {_T('timesteps')})."),
    n_envs: Optional[int] = typer.Option(None, "--n-envs", help=f"Parallel simulated users (default {_T('n_envs')})."),
    seed: Optional[int] = typer.Option(None, "--seed", help=f"Random seed (default {_T('seed')})."),
    out: Optional[str] = typer.Option(None, "--out", help=f"Run folder (default {_T('out')})."),
    action_mode: Optional[str] = typer.Option(None, "--action-mode", help="item | candidates | continuous (default per algo)."),
    obs_mode: Optional[str] = typer.Option(None, "--obs-mode", help=f"embedding | ids (default {_T('obs_mode')})."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML or YAML file with any TrainConfig option (the flags above win)."),
    device: Optional[str] = typer.Option(None, "--device", help=f"auto | cpu | cuda | cuda:N: where the agent's networks run (default {_T('device')})."),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed run from its last checkpoint."),
    engine: str = typer.Option(DEFAULT_ENGINE, "--engine", help="sb3 (Stable-Baselines3, in this process) | rllib (RLlib PPO on Ray; needs the seqrec\\[ray] extra)."),
    num_env_runners: int = typer.Option(default_of(RLlibConfig, "num_env_runners"), "--num-env-runners",
                                        help="--engine rllib: env runner processes sampling in parallel, --n-envs users each (0: sample in this process)."),
    address: Optional[str] = typer.Option(default_of(RLlibConfig, "address"), "--address", help="--engine rllib: Ray cluster, auto | HOST:PORT (default: a local Ray)."),
) -> None:
    """Train an agent on the batched env (progress, TensorBoard, periodic evaluation, checkpoints): SB3, or RLlib PPO on Ray."""
    from seqrec.agents.train import train
    from seqrec.infra.errors import SeqrecError

    if engine not in ENGINES:
        raise SeqrecError(f"--engine must be {' or '.join(ENGINES)}, not {engine!r}")
    if engine != "rllib" and address is not None:
        raise SeqrecError("--address applies to --engine rllib (SB3 trains in this process)")
    cfg = TrainConfig.from_sources(config, {"algo": algo, "bundle": bundle, "timesteps": timesteps, "n_envs": n_envs, "seed": seed,
                                            "out": out, "action_mode": action_mode, "obs_mode": obs_mode, "device": device})  # fmt: skip
    t0 = time.perf_counter()
    if engine == "rllib":
        from seqrec.agents.rllib_engine import train_rllib

        run = train_rllib(cfg, RLlibConfig(num_env_runners=num_env_runners, address=address), resume=resume)
    else:
        run = train(cfg, resume=resume)
    console.print(f"{cfg.algo} trained for {cfg.timesteps} steps in {time.perf_counter() - t0:.0f} s -> [bold]{run}[/]")


def evaluate_command(
    runs: Optional[List[Path]] = typer.Argument(None, help="Run folders of trained agents."),
    baselines: str = typer.Option("all", "--baselines", help="Comma-separated baselines, 'all' or 'none'."),
    bundle: Optional[str] = typer.Option(None, "--bundle", help="Bundle (default: the runs' bundle, else the default one)."),
    episodes: int = typer.Option(default_of(EvalConfig, "episodes"), "--episodes", help="Simulated users per policy."),
    seed: int = typer.Option(default_of(EvalConfig, "seed"), "--seed", help="Evaluation seed (same seed, same numbers)."),
    out: Path = typer.Option(Path("evaluation"), "--out", help="Folder for results.json and the PNG plots."),
) -> None:
    """Evaluate trained agents and baselines on the same seeded simulated users, in the same env."""
    tables = run_evaluation(list(runs or []), baselines, bundle, EvalConfig(episodes=episodes, seed=seed), out)
    _print_tables(tables)
    console.print(f"results: {out / 'results.json'}, plots: {out / 'comparison.png'}")


def _print_tables(tables: list[dict], title: str = "Online evaluation") -> None:
    from seqrec.agents.report import results_rows

    for t in tables:
        header, rows = results_rows(t["results"])
        show_table(f"{title} — every policy in env {_env_label(t['env'])}", header, rows)


def _env_label(env: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(env.items()))


def run_evaluation(runs: list[Path], baselines: str, bundle: str | None, config: EvalConfig, out: Path) -> list[dict]:
    """Evaluate ``runs`` and ``baselines``, one table per env the runs were trained in.

    Writes results.json (``tables``: env options and results of each), comparison.png and
    learning_curves.png into ``out``; returns the tables.
    """
    from seqrec.agents.evaluation import evaluate_policy
    from seqrec.agents.policies import SB3Policy, baseline_names, make_baseline
    from seqrec.agents.report import bar_chart, learning_curves
    from seqrec.agents.train import load_agent, run_label
    from seqrec.envs.bundle import load_bundle
    from seqrec.infra.atomic import write_json_atomic
    from seqrec.infra.errors import SeqrecError

    names = baseline_names(baselines)
    agents = [(run, *load_agent(run)) for run in runs]
    bundles = {cfg.bundle for _, _, cfg in agents}
    if bundle is None and len(bundles) > 1:
        raise SeqrecError(f"the runs were trained on different bundles ({', '.join(map(str, bundles))}); pass --bundle")
    loaded = load_bundle(bundle if bundle is not None else (bundles.pop() if bundles else None))
    envs: dict[str, dict] = {}
    for run, model, cfg in agents:
        env = cfg.env_options()
        envs.setdefault(json.dumps(env, sort_keys=True), {"env": env, "agents": []})["agents"].append((run, model, cfg))
    if not envs:
        envs["{}"] = {"env": {"action_mode": "item"}, "agents": []}
    tables = []
    for group in envs.values():
        results = [evaluate_policy(SB3Policy(model, name=run_label(run, cfg)), loaded, group["env"], config) for run, model, cfg in group["agents"]]
        results += [evaluate_policy(make_baseline(name, config.seed), loaded, group["env"], config) for name in names]
        tables.append({"env": group["env"], "results": results})
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "results.json", {"bundle": str(loaded.folder), "episodes": config.episodes, "seed": config.seed,
                                             "tables": [{"env": t["env"], "results": [{k: v for k, v in r.items() if k != "returns"} for r in t["results"]]} for t in tables]})  # fmt: skip
    bar_chart(tables, out / "comparison.png")
    learning_curves(runs, out / "learning_curves.png")
    return tables


@dataclass
class DemoConfig:
    """``seqrec demo``: one agent trained for a few minutes, then evaluated against every baseline."""

    algo: str = "maskable-ppo"
    """Agent to train (MaskablePPO never re-recommends a consumed item)."""
    timesteps: int = 150_000
    """Training steps (a few minutes on 2 cores)."""
    episodes: int = 1000
    """Evaluation users per policy."""
    seed: int = 0
    """Seed of training and evaluation."""


_D = lambda name: default_of(DemoConfig, name)  # noqa: E731


def demo_command(
    data: Optional[Path] = typer.Option(None, "--data", help="Run on this log instead of the synthetic default."),
    out: Path = typer.Option(Path("demo"), "--out", help="Folder for the bundle, the run and report.md."),
    algo: str = typer.Option(_D("algo"), "--algo", help="Agent to train."),
    timesteps: int = typer.Option(_D("timesteps"), "--timesteps", help="Training steps."),
    episodes: int = typer.Option(_D("episodes"), "--episodes", help="Evaluation users per policy."),
    seed: int = typer.Option(_D("seed"), "--seed", help="Seed of training and evaluation."),
) -> None:
    """The whole workflow: data -> bundle -> train an agent -> evaluate against every baseline -> report."""
    run_demo(data, out, DemoConfig(algo=algo, timesteps=timesteps, episodes=episodes, seed=seed))


def run_demo(data: Path | None, out: Path, demo: DemoConfig) -> Path:
    """Build (or reuse) the bundle, train ``demo.algo``, evaluate it and write ``out/report.md``."""
    from seqrec.agents.report import markdown_table
    from seqrec.agents.train import train
    from seqrec.envs.bundle import build_bundle, default_build_config, default_bundle

    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    console.rule("1/3 bundle: data, encoder, simulator")
    bundle = build_bundle(data, out / "bundle", default_build_config()) if data is not None else default_bundle()
    console.print(f"bundle: {bundle} ({time.perf_counter() - t0:.0f} s)")
    console.rule(f"2/3 training {demo.algo} for {demo.timesteps:,} steps")
    cfg = TrainConfig(algo=demo.algo, bundle=str(bundle), timesteps=demo.timesteps, seed=demo.seed, out=str(out / f"run-{demo.algo}"),
                      eval_freq=max(demo.timesteps // 6, 1000), eval_episodes=200, threads=1)  # fmt: skip
    run = train(cfg)
    console.rule(f"3/3 evaluating on {demo.episodes} simulated users")
    tables = run_evaluation([run], "all", str(bundle), EvalConfig(episodes=demo.episodes, seed=demo.seed), out)
    _print_tables(tables, title=f"seqrec demo: {demo.algo} vs baselines ({demo.episodes} users each)")
    _write_report(out, bundle, tables[0], cfg, time.perf_counter() - t0, markdown_table(tables[0]["results"]))
    console.print(f"report: [bold]{out / 'report.md'}[/] ({time.perf_counter() - t0:.0f} s in all)")
    return out / "report.md"


def _write_report(out: Path, bundle: Path, table: dict, cfg: TrainConfig, seconds: float, markdown: str) -> None:
    """demo/report.md: the comparison table, the plots, and what the bundle is made of."""
    meta = json.loads((Path(bundle) / "bundle.json").read_text())
    fid = meta.get("fidelity", {})
    enc = meta.get("encoder_test_metrics", {})
    lines = [
        "# seqrec demo report", "",
        f"Data: `{meta['source']}` — {meta['n_users']} users, {meta['n_items']} items, behaviours {', '.join(meta['behaviours'])}.",
        f"Agent: {cfg.algo} ({cfg.action_mode} actions), {cfg.timesteps:,} steps, seed {cfg.seed}. Total time {seconds:.0f} s.", "",
        f"## Online evaluation (same seeded simulated users and the same env for every policy: {_env_label(table['env'])})", "", markdown,
        "Return = clicks (plus behaviour weights) per episode; mean length = steps before the user left (retention);",
        "coverage = share of the catalogue ever recommended; diversity = mean pairwise (1 - cosine) within an episode;",
        "novelty = mean self-information of recommended items under train popularity.", "",
        "![comparison](comparison.png)", "", "![learning curves](learning_curves.png)", "",
        "## The bundle", "",
        f"Encoder test metrics ({enc.get('protocol', 'full')} ranking): " + ", ".join(f"{k} {v:.4f}" for k, v in enc.items() if isinstance(v, float)), "",
        "Simulator fidelity: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in fid.items()), "",
    ]  # fmt: skip
    from seqrec.infra.atomic import atomic_write

    with atomic_write(out / "report.md") as fh:
        fh.write("\n".join(lines))
