"""``seqrec prepare | train | evaluate | demo``: the research workflow from the shell."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from seqrec.encoders.config import PretrainConfig

console = Console()


def prepare_command(
    data: Path = typer.Argument(..., help="A log file or dataset folder (see `seqrec data`)."),
    out: Path = typer.Option(..., "--out", help="Bundle folder to write."),
    format: Optional[str] = typer.Option(None, "--format", help="Force the log format."),
    columns: Optional[str] = typer.Option(None, "--columns", help="Generic logs: user=COL,item=COL,time=COL[,…]."),
    sep: Optional[str] = typer.Option(None, "--sep", help="Generic text logs: field separator."),
    min_value: Optional[float] = typer.Option(None, "--min-value", help="Keep events with value >= this."),
    encoder: str = typer.Option("cnn+gnn", "--encoder", help="cnn | gnn | cnn+gnn."),
    epochs: int = typer.Option(30, "--epochs", help="Encoder pretraining epochs (early stopping may end sooner)."),
    seed: int = typer.Option(0, "--seed", help="Seed of pretraining and simulator fitting."),
    precision: str = typer.Option(PretrainConfig.precision, "--precision", help="Encoder pretraining step: auto | fp32 | bf16 (see `seqrec pretrain --help`)."),
) -> None:
    """Build a bundle: prepared data, pretrained encoder, fitted simulator, fidelity report."""
    from seqrec.data.preprocess import PrepConfig
    from seqrec.envs.bundle import BuildConfig, build_bundle
    from seqrec.simulators.config import SimulatorConfig

    cfg = BuildConfig(format=format, columns=columns, sep=sep, prep=PrepConfig(min_value=min_value), encoder={"encoder": encoder},
                      pretrain=PretrainConfig(epochs=epochs, seed=seed, precision=precision), simulator=SimulatorConfig(seed=seed), seed=seed)  # fmt: skip
    t0 = time.perf_counter()
    path = build_bundle(data, out, cfg)
    console.print(f"bundle written to [bold]{path}[/] in {time.perf_counter() - t0:.0f} s")


def train_command(
    algo: Optional[str] = typer.Option(None, "--algo", help="ppo | a2c | dqn | qrdqn | sac | td3 | maskable-ppo."),
    bundle: Optional[str] = typer.Option(None, "--bundle", help="Bundle folder (default: the synthetic default bundle)."),
    timesteps: Optional[int] = typer.Option(None, "--timesteps", help="Total environment steps."),
    n_envs: Optional[int] = typer.Option(None, "--n-envs", help="Parallel simulated users."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed."),
    out: Optional[str] = typer.Option(None, "--out", help="Run folder (runs/NAME)."),
    action_mode: Optional[str] = typer.Option(None, "--action-mode", help="item | candidates | continuous (default per algo)."),
    obs_mode: Optional[str] = typer.Option(None, "--obs-mode", help="embedding | ids."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML or YAML file with any of these options."),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed run from its last checkpoint."),
) -> None:
    """Train an SB3 agent on the batched env (progress bar, TensorBoard, periodic evaluation)."""
    from seqrec.agents.train import TrainConfig, train

    cfg = TrainConfig.from_sources(config, {"algo": algo, "bundle": bundle, "timesteps": timesteps, "n_envs": n_envs, "seed": seed,
                                            "out": out, "action_mode": action_mode, "obs_mode": obs_mode})  # fmt: skip
    t0 = time.perf_counter()
    run = train(cfg, resume=resume)
    console.print(f"{cfg.algo} trained for {cfg.timesteps} steps in {time.perf_counter() - t0:.0f} s -> [bold]{run}[/]")


def evaluate_command(
    runs: Optional[List[Path]] = typer.Argument(None, help="Run folders of trained agents."),
    baselines: str = typer.Option("all", "--baselines", help="Comma-separated baselines, 'all' or 'none'."),
    bundle: Optional[str] = typer.Option(None, "--bundle", help="Bundle (default: the runs' bundle, else the default one)."),
    episodes: int = typer.Option(1000, "--episodes", help="Simulated users per policy."),
    seed: int = typer.Option(0, "--seed", help="Evaluation seed (same seed, same numbers)."),
    out: Path = typer.Option(Path("evaluation"), "--out", help="Folder for results.json and the PNG plots."),
) -> None:
    """Evaluate trained agents and baselines on the same seeded simulated users."""
    results = run_evaluation(list(runs or []), baselines, bundle, episodes, seed, out)
    from seqrec.agents.report import results_table

    console.print(results_table(results))
    console.print(f"results: {out / 'results.json'}, plots: {out / 'comparison.png'}")


def run_evaluation(runs: list[Path], baselines: str, bundle: str | None, episodes: int, seed: int, out: Path) -> list[dict]:
    """Evaluate ``runs`` and ``baselines``; write results.json, comparison.png, learning_curves.png."""
    from seqrec.agents.evaluation import EvalConfig, evaluate_policy
    from seqrec.agents.policies import BASELINES, SB3Policy, make_baseline
    from seqrec.agents.report import bar_chart, learning_curves
    from seqrec.agents.train import load_agent
    from seqrec.infra.atomic import write_json_atomic
    from seqrec.infra.errors import SeqrecError
    from seqrec.envs.bundle import load_bundle

    names = list(BASELINES) if baselines == "all" else [] if baselines == "none" else [b.strip() for b in baselines.split(",") if b.strip()]
    agents = [(run, *load_agent(run)) for run in runs]
    bundles = {cfg.bundle for _, _, cfg in agents}
    if bundle is None and len(bundles) > 1:
        raise SeqrecError(f"the runs were trained on different bundles ({', '.join(map(str, bundles))}); pass --bundle")
    bundle = bundle if bundle is not None else (bundles.pop() if bundles else None)
    loaded = load_bundle(bundle)
    ecfg = EvalConfig(episodes=episodes, seed=seed)
    results = []
    for run, model, cfg in agents:
        r = evaluate_policy(SB3Policy(model, name=f"{cfg.algo}:{run.name}"), loaded, cfg.env_options(), ecfg)
        results.append(r)
    for name in names:
        results.append(evaluate_policy(make_baseline(name, seed), loaded, {"action_mode": "item"}, ecfg))
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "results.json", {"bundle": str(loaded.folder), "episodes": episodes, "seed": seed,
                                             "results": [{k: v for k, v in r.items() if k != "returns"} for r in results]})  # fmt: skip
    bar_chart(results, out / "comparison.png")
    learning_curves(runs, out / "learning_curves.png")
    return results


def demo_command(
    data: Optional[Path] = typer.Option(None, "--data", help="Run on this log instead of the synthetic default."),
    out: Path = typer.Option(Path("demo"), "--out", help="Folder for the bundle, the run and report.md."),
    algo: str = typer.Option("maskable-ppo", "--algo", help="Agent to train (MaskablePPO never re-recommends a consumed item)."),
    timesteps: int = typer.Option(150_000, "--timesteps", help="Training steps (a few minutes on 2 cores)."),
    episodes: int = typer.Option(1000, "--episodes", help="Evaluation users per policy."),
    seed: int = typer.Option(0, "--seed", help="Seed of training and evaluation."),
) -> None:
    """The whole workflow: data -> bundle -> train an agent -> evaluate against every baseline -> report."""
    from seqrec.agents.report import markdown_table, results_table
    from seqrec.agents.train import TrainConfig, train
    from seqrec.envs.bundle import build_bundle, default_build_config, default_bundle

    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    console.rule("1/3 bundle: data, encoder, simulator")
    bundle = build_bundle(data, out / "bundle", default_build_config()) if data is not None else default_bundle()
    console.print(f"bundle: {bundle} ({time.perf_counter() - t0:.0f} s)")
    console.rule(f"2/3 training {algo} for {timesteps:,} steps")
    cfg = TrainConfig(algo=algo, bundle=str(bundle), timesteps=timesteps, seed=seed, out=str(out / f"run-{algo}"),
                      eval_freq=max(timesteps // 6, 1000), eval_episodes=200, threads=1)  # fmt: skip
    run = train(cfg)
    console.rule(f"3/3 evaluating on {episodes} simulated users")
    results = run_evaluation([run], "all", str(bundle), episodes, seed, out)
    console.print(results_table(results, title=f"seqrec demo: {algo} vs baselines ({episodes} users each)"))
    _write_report(out, bundle, results, cfg, time.perf_counter() - t0, markdown_table(results))
    console.print(f"report: [bold]{out / 'report.md'}[/] ({time.perf_counter() - t0:.0f} s in all)")


def _write_report(out: Path, bundle: Path, results: list[dict], cfg, seconds: float, table: str) -> None:
    """demo/report.md: the comparison table, the plots, and what the bundle is made of."""
    import json

    meta = json.loads((Path(bundle) / "bundle.json").read_text())
    fid = meta.get("fidelity", {})
    enc = meta.get("encoder_test_metrics", {})
    lines = [
        "# seqrec demo report", "",
        f"Data: `{meta['source']}` — {meta['n_users']} users, {meta['n_items']} items, behaviours {', '.join(meta['behaviours'])}.",
        f"Agent: {cfg.algo} ({cfg.action_mode} actions), {cfg.timesteps:,} steps, seed {cfg.seed}. Total time {seconds:.0f} s.", "",
        "## Online evaluation (same seeded simulated users for every policy)", "", table,
        "Return = clicks (plus behaviour weights) per episode; mean length = steps before the user left (retention);",
        "coverage = share of the catalogue ever recommended; diversity = mean pairwise (1 - cosine) within an episode;",
        "novelty = mean self-information of recommended items under train popularity.", "",
        "![comparison](comparison.png)", "", "![learning curves](learning_curves.png)", "",
        "## The bundle", "",
        "Encoder test metrics (full ranking): " + ", ".join(f"{k} {v:.4f}" for k, v in enc.items() if isinstance(v, float)), "",
        "Simulator fidelity: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in fid.items()), "",
    ]  # fmt: skip
    (out / "report.md").write_text("\n".join(lines))
