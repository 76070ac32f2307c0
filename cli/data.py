"""``seqrec data …``: synthesise, fetch, inspect and prepare logged datasets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from seqrec.cli.options import COLUMNS, FORMAT, MIN_VALUE, POSITIVE, SEP, default_of
from seqrec.cli.output import show_table
from seqrec.data.preprocess import PrepConfig
from seqrec.data.sequences import SplitConfig
from seqrec.data.synth_config import SynthConfig
from seqrec.data.synth_presets import PRESETS, synth_preset

app = typer.Typer(help="Logged datasets: synthesise, fetch, inspect, prepare.", no_args_is_help=True)


@app.command("fetch")
def fetch_cmd(
    name: str = typer.Argument(..., help="movielens-100k | movielens-1m | movielens-latest-small"),
    dir: Path = typer.Option(Path("datasets"), "--dir", help="Folder to download and unpack into."),
) -> None:
    """Download a public dataset from its official source, verified by SHA-256."""
    from seqrec.data.fetch import fetch_dataset

    typer.echo(str(fetch_dataset(name, dir)))


@app.command("synth")
def synth_cmd(
    preset: str = typer.Option("default", "--preset", help="Regime of the log: " + "; ".join(f"{k}: {p.summary}" for k, p in PRESETS.items()) + "."),
    users: Optional[int] = typer.Option(None, "--users", help="Number of simulated users (default: the preset's, else SynthConfig.n_users)."),
    items: Optional[int] = typer.Option(None, "--items", help="Catalogue size (default: the preset's, else SynthConfig.n_items)."),
    seed: int = typer.Option(default_of(SynthConfig, "seed"), "--seed", help="Random seed; the same seed gives byte-identical files."),
    exposure_bias: Optional[float] = typer.Option(None, "--exposure-bias",
                                                  help="S: tilt the logging policy toward the items each user is likely to click, "
                                                       "pi_S ∝ pi_0 * exp(S * true click logit), pscore = pi_S (default: the preset's, "
                                                       f"else SynthConfig.exposure_bias = {default_of(SynthConfig, 'exposure_bias'):g}: today's policy)."),
    random_exposure: Optional[int] = typer.Option(None, "--random-exposure",
                                                  help="Also write random_exposure.csv: N distinct uniform items per user with outcomes from "
                                                       "the true P(click) (value 0/1, behaviour view/click, truth = that P); 0: none."),
    out: Path = typer.Option(Path("synthetic"), "--out", help="Output folder."),
) -> None:
    """Write a synthetic log from the documented generative user model, with its ground truth.

    --preset picks the regime (seqrec.data.synth_presets): the same model logged as anonymous sessions, over a large Zipf catalogue, as positives only, or as a pv/fav/cart/buy funnel.
    """
    from seqrec.data.synthetic import write_synthetic

    sizes = {k: v for k, v in (("n_users", users), ("n_items", items), ("exposure_bias", exposure_bias),
                               ("random_exposure", random_exposure)) if v is not None}  # fmt: skip
    typer.echo(str(write_synthetic(out, synth_preset(preset, seed=seed, **sizes))))


def _print_stats(title: str, stats: dict) -> None:
    rows = [(k, ", ".join(f"{a}={b}" for a, b in v.items()) if isinstance(v, dict) else v) for k, v in stats.items()]
    show_table(title, ("field", "value"), rows, show_header=False)


@app.command("info")
def info_cmd(
    path: Path = typer.Argument(..., help="A log file or dataset folder."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
    format: Optional[str] = FORMAT,
    columns: Optional[str] = COLUMNS,
    sep: Optional[str] = SEP,
) -> None:
    """Users, items, interactions, behaviours, time span and sequence lengths of a raw log."""
    from seqrec.data.readers import read_log
    from seqrec.data.sequences import describe

    table = read_log(path, format, columns, sep)  # streamed into columns for generic logs
    ev = table.columns
    stats = describe(ev["user"], ev["item"], ev["ts"], ev["behaviour"], table.n_users, table.n_items, table.behaviour_names)
    stats["item_features"] = len(table.item_feature_names)
    stats["source"] = table.source
    if table.notes:
        stats["notes"] = "; ".join(table.notes)
    if json_out:
        typer.echo(json.dumps(stats))
    else:
        _print_stats(f"seqrec data info: {path}", stats)


@app.command("prepare")
def prepare_cmd(
    path: Path = typer.Argument(..., help="A log file or dataset folder."),
    format: Optional[str] = FORMAT,
    columns: Optional[str] = COLUMNS,
    sep: Optional[str] = SEP,
    min_value: Optional[float] = MIN_VALUE,
    positive: Optional[str] = POSITIVE,
    dedup: str = typer.Option(default_of(PrepConfig, "dedup"), "--dedup", help="none | exact | first | last (one event per user-item pair)."),
    min_user: int = typer.Option(default_of(PrepConfig, "min_user_interactions"), "--min-user", help="k-core: minimum events per user."),
    min_item: int = typer.Option(default_of(PrepConfig, "min_item_interactions"), "--min-item", help="k-core: minimum events per item."),
    split: str = typer.Option(default_of(SplitConfig, "mode"), "--split", help="leave-last-out | time."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Rebuild even when a cached copy exists."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Read, filter and split a log into the cache; prints the preprocessing report."""
    from seqrec.data.prepare import prepare_dataset
    from seqrec.data.sequences import describe

    prep = PrepConfig(min_value=min_value, positive=positive, dedup=dedup, min_user_interactions=min_user,
                      min_item_interactions=min_item)  # type: ignore[arg-type]
    seq = prepare_dataset(path, format=format, columns=columns, sep=sep, prep=prep,
                          split=SplitConfig(mode=split), use_cache=not no_cache)  # type: ignore[arg-type]
    out = {"cache_hit": seq.meta["cache_hit"], "key": seq.meta.get("key"), "report": seq.meta.get("report"),
           **describe(seq.users, seq.items, seq.ts, seq.behaviours, seq.n_users, seq.n_items, seq.behaviour_names)}  # fmt: skip
    out["split_targets"] = {s: int(len(seq.positions(s))) for s in ("train", "valid", "test")}
    if json_out:
        typer.echo(json.dumps(out))
    else:
        _print_stats(f"seqrec data prepare: {path}", out)
