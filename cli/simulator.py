"""``seqrec simulator fit``: fit a user simulator on a log and report its fidelity."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from seqrec.cli.options import COLUMNS, DEBIAS, DEVICE, FORMAT, POSITIVE, SEP, default_of, existing_path
from seqrec.cli.output import console, show_table
from seqrec.simulators.config import SimulatorConfig
from seqrec.cli.simulator_validate import validate_cmd

app = typer.Typer(help="User simulators fitted from logged data: fit, fidelity report.", no_args_is_help=True)
app.command("validate")(validate_cmd)


@app.command("fit")
def fit_cmd(
    data: Path = typer.Argument(..., help="A log file or dataset folder (anything `seqrec data prepare` reads)."),
    out: Path = typer.Option(..., "--out", help="Folder for simulator.pt, fidelity.json and the PNG plots."),
    format: Optional[str] = FORMAT,
    columns: Optional[str] = COLUMNS,
    sep: Optional[str] = SEP,
    positive: Optional[str] = POSITIVE,
    epochs: int = typer.Option(default_of(SimulatorConfig, "epochs"), "--epochs", help="Training epochs of the response model (early stopping on held-out log-loss)."),
    seed: int = typer.Option(default_of(SimulatorConfig, "seed"), "--seed", help="Seed of the fit and of the fidelity simulations."),
    threads: int = typer.Option(1, "--threads", help="torch CPU threads (one is fastest for these small models on a shared machine)."),
    device: str = DEVICE,
    debias: str = DEBIAS,
    debias_max_weight: float = typer.Option(default_of(SimulatorConfig, "debias_max_weight"), "--debias-max-weight",
                                            help="Upper clip of the inverse-propensity weights of --debias ips | snips."),
    json_out: bool = typer.Option(False, "--json", help="Print the fidelity report as JSON instead of a table."),
) -> None:
    """Fit the click, outcome and exit models on DATA, then write the checkpoint and the fidelity report."""
    from seqrec.infra.threads import torch_threads

    config = SimulatorConfig(epochs=epochs, seed=seed, device=device, debias=debias, debias_max_weight=debias_max_weight)  # type: ignore[arg-type]
    with torch_threads(threads):
        report, checkpoint = _fit_and_report(existing_path(data), out, format, columns, sep, config, positive=positive)
    if json_out:
        typer.echo(json.dumps(report, default=str))
        return
    _print_summary(report, checkpoint)
    for problem in report["weak_simulator"]:
        console.print(f"warning: weak simulator: {problem}", style="yellow")


def _fit_and_report(data: Path, out: Path, format: Optional[str], columns: Optional[str], sep: Optional[str],
                    config: SimulatorConfig, positive: Optional[str] = None) -> tuple[dict, Path]:  # fmt: skip
    """Prepare DATA (``positive``: the ``--positive`` rule), fit the simulator into OUT and write
    its fidelity report; return (report, checkpoint)."""
    import torch

    from seqrec.data.ground_truth import GroundTruth
    from seqrec.data.prepare import prepare_dataset
    from seqrec.data.preprocess import PrepConfig
    from seqrec.infra.progress import progress
    from seqrec.simulators.fidelity import fidelity_report
    from seqrec.simulators.simulator import CHECKPOINT_NAME, fit_simulator

    t0 = time.perf_counter()
    seq = prepare_dataset(data, format=format, columns=columns, sep=sep, prep=PrepConfig(positive=positive))
    truth = GroundTruth.of_log(data)
    with progress(total=config.epochs * len(config.dims), desc="fit response model", unit="epoch", leave=False) as bar:
        def on_epoch(epoch: int, metrics: dict) -> None:
            bar.update(1)  # early stopping may skip epochs: the bar can end short of its total
            bar.set_postfix(dim=metrics["dim"], valid_log_loss=metrics["valid_log_loss"], valid_auc=metrics["valid_auc"])

        sim = fit_simulator(seq, config, out, on_epoch=on_epoch)
    with progress(total=6 if truth is not None else 5, desc="fidelity", leave=False) as bar:
        def on_stage(name: str) -> None:
            bar.update(1)
            bar.set_postfix_str(name)

        argv = ["seqrec", "simulator", "fit", str(data), "--out", str(out), "--seed", str(config.seed)]
        argv += [] if positive is None else ["--positive", positive]
        argv += [] if config.debias == "none" else ["--debias", config.debias, "--debias-max-weight", f"{config.debias_max_weight:g}"]
        command = {"argv": argv,
                   "fit_and_prepare_seconds": round(time.perf_counter() - t0, 1), "torch_threads": torch.get_num_threads()}  # fmt: skip
        report = fidelity_report(sim, seq, out, truth=truth, seed=config.seed, on_stage=on_stage, extra={"command": command})
    return report, out / CHECKPOINT_NAME


def _print_summary(report: dict, checkpoint: Path) -> None:
    c, rp, ex = report["click_model"], report["replay"], report["exit_model"]
    rows = [
        (f"click AUC ({c['headline']})", c["auc"]), ("popularity AUC, same pairs", c["popularity_auc"]),
        ("click log-loss", c["log_loss"]), ("ECE", c["ece"]),
        ("P(click) 5 / 50 / 95 %", f"{c['p_click']['p05']} / {c['p_click']['p50']} / {c['p_click']['p95']}"),
        ("base click rate", f"{c['base_click_rate'].get('value')} ({c['base_click_rate'].get('source')})"),
        ("click AUC (test, sampled negatives)", c["test_sampled"]["auc"]),
        ("replay click rate sim / log", f"{rp['sim_click_rate']} / {rp['log_click_rate']}"),
        ("JS items / popularity / categories", f"{rp['js_items']} / {rp['js_popularity_deciles']} / {rp['js_categories']}"),
        ("session length sim / log (JS)", f"{rp['sim_mean_session_length']} / {rp['log_mean_session_length']} ({rp['js_session_length']})"),
        ("exit logit", f"{ex['intercept']:.3f} + {ex['slope']:.3f} * misses" + ("" if ex["slope_fitted"] else " (default slope)")),
    ]  # fmt: skip
    db = report.get("debias", {})
    if db.get("method", "none") != "none":
        rows.append(("debias", f"{db['method']}, {db['propensity_source']}, weights <= {db['max_weight']:g} "
                               f"({db['clipped_share']:.1%} clipped, effective sample {db['effective_sample_share']:.1%})"))
    gt = report.get("ground_truth")
    if gt:
        rows += [("Spearman P(click) vs truth", gt["spearman_click"]), ("Spearman P(exit) vs truth", gt["spearman_exit"])]
    rows += [("steps/s (B=64)", report["throughput"]["steps_per_s"]), ("fit seconds", report["fit"]["fit_seconds"]),
             ("checkpoint", str(checkpoint))]  # fmt: skip
    show_table(f"seqrec simulator fit: {report['dataset']['source']}", ("metric", "value"), rows)
