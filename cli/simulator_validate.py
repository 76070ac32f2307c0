"""``seqrec simulator validate``: score a simulator on a log of randomly exposed feedback.

The metrics are :mod:`seqrec.simulators.validation`'s, the policies' picks
:mod:`seqrec.agents.exposed`'s; this module joins them (the CLI may import both) and writes
``validation.json``, ``reliability.png`` and ``policies.png``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Optional

import typer

from seqrec.cli.options import COLUMNS, FORMAT, POSITIVE, SEP, default_of, existing_path
from seqrec.cli.output import console, show_table
from seqrec.simulators.validation import ValidationConfig

__all__ = ["run_validation", "validate_cmd"]

_V = lambda name: default_of(ValidationConfig, name)  # noqa: E731


def validate_cmd(
    target: Path = typer.Argument(..., help="A bundle (seqrec prepare) or a simulator folder (seqrec simulator fit --out)."),
    unbiased: Path = typer.Option(..., "--unbiased", help="A log of randomly exposed events of the same users and items (raw ids), any format seqrec reads."),
    out: Path = typer.Option(..., "--out", help="Folder for validation.json, reliability.png and policies.png."),
    format: Optional[str] = FORMAT,
    columns: Optional[str] = COLUMNS,
    sep: Optional[str] = SEP,
    positive: Optional[str] = POSITIVE,
    runs: Optional[List[Path]] = typer.Option(None, "--runs", help="A trained run folder (seqrec train) to rank too; repeat for more."),
    seed: int = typer.Option(_V("seed"), "--seed", help="Seed of the random policy and of the popularity baseline's calibration pairs."),
    block_users: int = typer.Option(_V("block_users"), "--block-users", help="Users scored per batched call."),
    threads: int = typer.Option(1, "--threads", help="torch CPU threads."),
    json_out: bool = typer.Option(False, "--json", help="Print validation.json instead of tables."),
) -> None:
    """Score the simulator on randomly exposed events (AUC, log-loss, ECE beside popularity) and check that it ranks policies as they do.

    Without --positive the events are labelled by the rule the simulator's log was prepared with, else by behaviour
    (the simulator's negative behaviour names are the negatives).
    """
    from seqrec.infra.threads import torch_threads

    with torch_threads(threads):
        report = run_validation(existing_path(target), existing_path(unbiased), out, format=format, columns=columns, sep=sep,
                                positive=positive, runs=list(runs or []), config=ValidationConfig(seed=seed, block_users=block_users))  # fmt: skip
    if json_out:
        typer.echo(json.dumps(report))
        return
    _print(report, out)


def run_validation(target: Path, unbiased: Path, out: Path, *, format: str | None = None, columns: str | None = None,
                   sep: str | None = None, positive: str | None = None, runs: list[Path] | None = None,
                   config: ValidationConfig = ValidationConfig()) -> dict[str, Any]:  # fmt: skip
    """Validate ``target`` on the log ``unbiased``; write the report and plots into ``out`` (after
    everything is computed, so a failure writes nothing); return what ``validation.json`` holds."""
    from seqrec.agents.exposed import policy_picks
    from seqrec.data.positive import parse_positive
    from seqrec.data.readers import read_log
    from seqrec.infra.atomic import write_json_atomic
    from seqrec.infra.progress import progress
    from seqrec.simulators import validation as v
    from seqrec.simulators.validation_plots import write_validation_plots

    sim, seq, bundle = _load_target(target)
    rule_text = positive if positive is not None else (seq.meta.get("options") or {}).get("prep", {}).get("positive")
    rule = parse_positive(rule_text) if rule_text else None
    table = read_log(unbiased, format, columns, sep)  # bad input stops here, before any progress line
    log = v.exposed_log(table, v.observed_outcomes(table, rule, sim.config.negative_behaviours), seq)
    with progress(total=3, desc="validate", leave=False) as bar:
        p_pairs = v.score_pairs(sim, seq, log, config.block_users)
        metrics, reliability = v.validation_metrics(p_pairs[log.event_pair], log.labels)
        bar.update(1)
        p_pop = v.popularity_probability(sim, seq, config.seed)[log.items[log.event_pair]]
        baseline, baseline_reliability = v.validation_metrics(p_pop, log.labels)
        bar.update(1)
        picks, skipped = policy_picks(sim, seq, log, bundle, runs or [], config)
        ranking = v.policy_ranking(picks, p_pairs, log.outcome)
        bar.update(1)
    ranking.update(skipped=skipped, unbiased_log={"source": str(unbiased), "positive": str(rule) if rule else None, **log.counts})
    report = {**metrics, "baseline": baseline, "policy_ranking": ranking}
    out.mkdir(parents=True, exist_ok=True)
    write_validation_plots(out, report, reliability, baseline_reliability)
    write_json_atomic(out / "validation.json", report)
    return report


def _load_target(path: Path):
    """``(simulator, its dataset, the bundle or None)`` of a bundle folder or a simulator folder / checkpoint."""
    if path.is_dir() and (path / "bundle.json").exists():
        from seqrec.envs.bundle import load_bundle

        bundle = load_bundle(path)
        return bundle.simulator, bundle.seq, bundle
    from seqrec.simulators.simulator import UserSimulator
    from seqrec.simulators.validation import simulator_dataset

    sim = UserSimulator.load(path)
    return sim, simulator_dataset(sim, path), None


def _print(report: dict, out: Path) -> None:
    rows = [(k, report[k], report["baseline"][k]) for k in ("auc", "log_loss", "ece", "mean_prediction", "positive_rate", "n")]
    show_table("seqrec simulator validate: randomly exposed events", ("metric", "simulator", "popularity"), rows)
    ranking = report["policy_ranking"]
    rows = [(name, v["simulated"], v["unbiased"]) for name, v in ranking["policies"].items()]
    show_table(f"policies: Kendall tau {ranking['kendall_tau']}, Spearman {ranking['spearman']}", ("policy", "simulated", "unbiased"), rows)
    log = ranking["unbiased_log"]
    console.print(f"events: {log['events_kept']} of {log['events_read']} kept ({log['dropped_unknown_user']} of unknown users, "
                  f"{log['dropped_unknown_item']} of unknown items), {log['users']} users, {log['pairs']} pairs")  # fmt: skip
    for name, why in ranking["skipped"].items():
        console.print(f"skipped {name}: {why}", style="yellow")
    console.print(f"report: {out / 'validation.json'}, plots: {out / 'reliability.png'}, {out / 'policies.png'}")
