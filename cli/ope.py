"""``seqrec ope …``: off-policy estimates on logged data, export of logged feedback, validation."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import numpy as np
import typer
from seqrec.agents.offline import ValidateConfig
from seqrec.cli.options import COLUMNS, FORMAT, POSITIVE, SEP, default_of
from seqrec.cli.output import console, show_table
from seqrec.infra.errors import SeqrecError

app = typer.Typer(help="Off-policy evaluation on logged data: a policy's one-step (bandit) value.", no_args_is_help=True)


def _bundle(bundle: Optional[str], data: Optional[Path], source: Optional[dict] = None):
    """The bundle to evaluate on: given, built for --data (cached), or the default one.

    :param source: --data only: how to read it (``format``, ``columns``, ``sep``, ``positive``);
        the cached bundle is keyed by the path and these.
    """
    from dataclasses import replace

    from seqrec.data.preprocess import PrepConfig
    from seqrec.envs.bundle import build_bundle, default_build_config, load_bundle

    if bundle is not None and data is not None:
        raise SeqrecError("pass --bundle or --data, not both")
    if data is not None:
        import hashlib

        from seqrec.data.prepare import cache_root

        source = {k: v for k, v in (source or {}).items() if v is not None}
        key = str(data.resolve()) + ("" if not source else repr(sorted(source.items())))  # no options: the key of earlier versions
        folder = cache_root() / "bundles" / ("data-" + hashlib.sha256(key.encode()).hexdigest()[:16])
        if not (folder / "bundle.json").exists():
            cfg = default_build_config()
            cfg = replace(cfg, format=source.get("format"), columns=source.get("columns"), sep=source.get("sep"),
                          prep=replace(cfg.prep, positive=source.get("positive")))  # fmt: skip
            build_bundle(data, folder, cfg)
        return load_bundle(folder)
    return load_bundle(bundle)


def _feedback(loaded, logs: Optional[Path]):
    """Logged feedback and the logged state of each round's user (history up to the round)."""
    from seqrec.ope.logged_feedback import LoggedFeedback
    from seqrec.agents.offline import feedback_from_bundle

    if logs is None:
        fb = feedback_from_bundle(loaded)
        pos = loaded.seq.positions("test")
        hist, beh = loaded.seq.histories(pos, loaded.simulator.max_history)
        return fb, fb.user, hist, beh.astype(np.int64)
    fb = LoggedFeedback.from_parquet(logs, n_actions=loaded.seq.n_items, propensity_source=_stated_source(logs))
    if fb.n_actions != loaded.seq.n_items:
        raise SeqrecError(f"{logs}: n_actions {fb.n_actions} does not match the bundle's {loaded.seq.n_items} items")
    if fb.user is None:
        raise SeqrecError(f"{logs}: no 'user' column; each round's user (the bundle's user index) is needed to rebuild "
                          "the state the policies act on (`seqrec ope export` writes it)")  # fmt: skip
    users = fb.user
    if users.max(initial=0) >= loaded.seq.n_users:
        raise SeqrecError(f"{logs}: user ids beyond the bundle's {loaded.seq.n_users} users")
    hist, beh = loaded.seq.user_histories(users, loaded.simulator.max_history, upto="valid")
    return fb, users, hist, beh.astype(np.int64)


def _stated_source(logs: Path) -> str | None:
    """A user's own file without seqrec metadata: its pscore column is taken as known propensities."""
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(logs).metadata or {}
    except Exception:  # unreadable: from_parquet reports it in one line
        return None
    return None if b"seqrec.propensity_source" in meta else "known"


@app.command("run")
def ope_command(
    runs: Optional[List[Path]] = typer.Argument(None, help="Run folders of trained agents."),
    bundle: Optional[str] = typer.Option(None, "--bundle", help="Bundle whose test split is the log (default: the runs')."),
    data: Optional[Path] = typer.Option(None, "--data", help="A raw log instead of a bundle (a bundle is built and cached)."),
    format: Optional[str] = FORMAT,
    columns: Optional[str] = COLUMNS,
    sep: Optional[str] = SEP,
    positive: Optional[str] = POSITIVE,
    logs: Optional[Path] = typer.Option(None, "--logs", help="Logged feedback Parquet file (see seqrec.ope.logged_feedback)."),
    baselines: str = typer.Option("random,most-popular,greedy", "--baselines", help="Comma-separated baselines, 'all' or 'none'."),
    out: Path = typer.Option(Path("ope"), "--out", help="Folder for ope.json and ope.png."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
) -> None:
    """Estimate trained policies' and baselines' value on logged data (DM, IPS, SNIPS, DR, Switch-DR, replay)."""
    from seqrec.agents.offline import action_distributions, estimate_all, reward_model
    from seqrec.agents.policies import SB3Policy, baseline_names, make_baseline
    from seqrec.agents.train import load_agent, run_label
    from seqrec.infra.atomic import write_json_atomic
    from seqrec.ope.diagnostics import log_flags

    agents = [(run, *load_agent(run)) for run in runs or []]
    if bundle is None and data is None and agents:
        bundle = agents[0][2].bundle
    if data is None and any(v is not None for v in (format, columns, sep, positive)):
        raise SeqrecError("--format, --columns, --sep and --positive describe a raw log: pass them with --data")
    loaded = _bundle(bundle, data, {"format": format, "columns": columns, "sep": sep, "positive": positive})
    fb, users, hist, beh = _feedback(loaded, logs)
    q_hat = reward_model(loaded, fb.n_rounds)
    policies = [(SB3Policy(m, name=run_label(r, c)), c.env_options()) for r, m, c in agents]
    policies += [(make_baseline(name, seed), None) for name in baseline_names(baselines)]
    results = {}
    for policy, env_options in policies:
        dist = action_distributions(policy, loaded, users, hist, beh, env_options)
        results[policy.name] = estimate_all(fb, dist, q_hat, seed=seed)
    flags = log_flags(fb.reward, fb.propensity_source)
    summary = {"bundle": str(loaded.folder), "rounds": fb.n_rounds, "propensities": fb.propensity_source,
               "logged_mean_reward": float(fb.reward.mean()), "flags": flags, "estimates": results}  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "ope.json", summary)
    _plot(results, out / "ope.png", f"OPE on {fb.n_rounds} logged rounds ({fb.propensity_source} propensities)")
    _print_estimates(results, fb, flags)
    console.print(f"results: {out / 'ope.json'}, plot: {out / 'ope.png'}")


def _print_estimates(results: dict, fb, flags: list[str]) -> None:
    """The table (a ``!`` marks a flagged estimate; ESS and max weight per policy), then one warning line per problem."""
    names = list(next(iter(results.values())).keys()) if results else []
    rows = []
    for pol, est in results.items():
        first = est[names[0]]
        cells = [f"{est[n]['estimate']:.4f} [{est[n]['ci95'][0]:.4f}, {est[n]['ci95'][1]:.4f}]" + (" !" if est[n]["flags"] else "") for n in names]
        rows.append((pol, *cells, f"{first['ess']:.1f}", f"{first['max_weight']:.3g}"))
    show_table(f"Off-policy estimates of the one-step value ({fb.n_rounds} rounds, {fb.propensity_source} propensities; "
               f"logged mean {fb.reward.mean():.4f})", ("policy", *names, "ESS", "max weight"), rows)  # fmt: skip
    for flag in flags:
        console.print(f"warning: {flag}", style="yellow")
    for pol, est in results.items():
        for flag in dict.fromkeys(f for e in est.values() for f in e["flags"]):  # each problem once per policy
            console.print(f"warning: {pol}: {flag}", style="yellow")


@app.command("export")
def export_command(
    out: Path = typer.Argument(..., help="Parquet file to write."),
    bundle: Optional[str] = typer.Option(None, "--bundle", help="Bundle whose test split to export (default bundle if omitted)."),
) -> None:
    """Write the bundle's logged bandit feedback (context, action, reward, pscore, user) to Parquet."""
    from seqrec.agents.offline import feedback_from_bundle

    fb = feedback_from_bundle(_bundle(bundle, None))
    fb.to_parquet(out)
    console.print(f"{fb.n_rounds} rounds ({fb.propensity_source} propensities) -> {out}")


@app.command("validate")
def validate_command(
    bundle: Optional[str] = typer.Option(None, "--bundle", help="Bundle (default: the synthetic default)."),
    target: str = typer.Option("greedy", "--target", help="Target policy: a baseline name."),
    rounds: str = typer.Option(",".join(map(str, default_of(ValidateConfig, "rounds"))), "--rounds", help="Comma-separated numbers of logged rounds."),
    repeats: int = typer.Option(default_of(ValidateConfig, "repeats"), "--repeats", help="Independent logs per size (CI coverage over these)."),
    seed: int = typer.Option(default_of(ValidateConfig, "seed"), "--seed", help="Seed of the logging experiment."),
    out: Path = typer.Option(Path("ope-validate"), "--out", help="Folder for validate.json and validate.png."),
) -> None:
    """Log rounds in the simulator with a known logging policy; compare every estimator with the truth."""
    from seqrec.agents.offline import validate
    from seqrec.agents.policies import make_baseline
    from seqrec.infra.atomic import write_json_atomic

    loaded = _bundle(bundle, None)
    cfg = ValidateConfig(rounds=tuple(int(r) for r in rounds.split(",")), repeats=repeats, seed=seed)
    res = validate(loaded, make_baseline(target, seed), cfg)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "validate.json", res)
    _plot_validation(res, out / "validate.png")
    rows = [(str(r["rounds"]), r["estimator"], f"{r['mean_estimate']:.4f}", f"{100 * r['relative_error']:.2f}%", f"{100 * r['ci_coverage']:.0f}%")
            for r in res["rows"]]  # fmt: skip
    show_table(f"OPE validation: target {res['target']}, true value {res['truth']:.4f}, {repeats} logs per size",
               ("rounds", "estimator", "mean estimate", "relative error", "CI coverage"), rows)  # fmt: skip
    console.print(f"results: {out / 'validate.json'}, plot: {out / 'validate.png'}")


def _plot(results: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    policies = list(results)
    estimators = list(next(iter(results.values())).keys()) if results else []
    width = 0.8 / max(len(estimators), 1)
    for j, est in enumerate(estimators):
        vals = np.array([results[p][est]["estimate"] for p in policies])
        lo = np.array([results[p][est]["ci95"][0] for p in policies])
        hi = np.array([results[p][est]["ci95"][1] for p in policies])
        x = np.arange(len(policies)) + j * width
        ax.bar(x, vals, width, yerr=[vals - lo, hi - vals], capsize=2, label=est)
    ax.set_xticks(np.arange(len(policies)) + 0.4 - width / 2, policies, rotation=20)
    ax.set_ylabel("estimated value (95% CI)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_validation(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for est in sorted({r["estimator"] for r in res["rows"]}):
        rows = [r for r in res["rows"] if r["estimator"] == est]
        n = [r["rounds"] for r in rows]
        axes[0].plot(n, [100 * r["relative_error"] for r in rows], marker="o", label=est)
        axes[1].plot(n, [100 * r["ci_coverage"] for r in rows], marker="o", label=est)
    axes[0].set(xscale="log", xlabel="logged rounds", ylabel="mean relative error (%)")
    axes[1].set(xscale="log", xlabel="logged rounds", ylabel="95% CI coverage (%)", ylim=(0, 105))
    axes[1].axhline(95, color="grey", ls="--")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
