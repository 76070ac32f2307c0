"""``seqrec sweep SPEC``: a grid of ``seqrec train`` runs on Ray Tune, and its summary table."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from seqrec.agents.sweep import SweepOptions
from seqrec.cli.options import default_of, existing_path
from seqrec.cli.output import console, show_table

_S = lambda name: default_of(SweepOptions, name)  # noqa: E731


def sweep_command(
    spec: Path = typer.Argument(..., help="YAML or TOML spec: base options, grid, optional search, evaluation (see `seqrec.agents.sweep`)."),
    out: Path = typer.Option(Path(_S("out")), "--out", help="Sweep folder: runs/<trial> (ordinary run folders), summary.json, summary.png."),
    address: Optional[str] = typer.Option(_S("address"), "--address", help="Ray cluster: auto | HOST:PORT (default: start a local Ray on this machine)."),
    cpus_per_trial: float = typer.Option(_S("cpus_per_trial"), "--cpus-per-trial", help="CPUs Tune reserves for each trial."),
    max_failures: int = typer.Option(_S("max_failures"), "--max-failures", help="Retries of a trial whose worker died (each resumes from its last checkpoint)."),
) -> None:
    """Train every configuration x seed of SPEC on Ray Tune; a re-run resumes and skips finished trials."""
    from seqrec.agents.sweep import run_sweep, summary_rows

    options = SweepOptions(out=str(out), address=address, cpus_per_trial=cpus_per_trial, max_failures=max_failures)
    summary = run_sweep(existing_path(spec), options)
    header, rows = summary_rows(summary)
    show_table(f"Sweep: final return over {summary['evaluation']['episodes']} users per trial ({len(summary['trials'])} trials)", header, rows)
    console.print(f"summary: {out / 'summary.json'}, plot: {out / 'summary.png'}; compare the runs with `seqrec evaluate {out}/runs/*`")
