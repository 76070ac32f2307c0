"""Options that several commands share, declared once, and the one way to read a default.

Every option's default is the default of the config dataclass field it sets:
``typer.Option(default_of(PretrainConfig, "epochs"), …)`` — never a literal restating it.
The data-source options (``--format``, ``--columns``, ``--sep``, ``--positive``) are declared
here and used by every command that reads a log.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import typer

from seqrec.data.preprocess import PrepConfig
from seqrec.infra.errors import SeqrecError
from seqrec.simulators.config import SimulatorConfig

__all__ = ["COLUMNS", "DEBIAS", "DEVICE", "FORMAT", "MIN_VALUE", "POSITIVE", "SEP", "default_of", "existing_path", "unescape_sep"]


def default_of(cls: type, name: str) -> Any:
    """The default of dataclass ``cls``'s field ``name`` (``default_factory`` called)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            raise SeqrecError(f"{cls.__name__}.{name} has no default")
    raise SeqrecError(f"{cls.__name__} has no field {name!r}")


def unescape_sep(sep: str | None) -> str | None:
    """``--sep '\\t'`` (backslash, t) means a tab, as it does in ``cut`` and ``awk``."""
    return sep.encode().decode("unicode_escape") if sep else sep


def existing_path(path: Path) -> Path:
    """``path`` if it exists; else a one-line error naming it."""
    if not path.exists():
        raise SeqrecError(f"{path}: no such file or folder")
    return path


FORMAT = typer.Option(None, "--format", help="Force the log format: ml-100k, ml-dat, ml-csv, recbole, synthetic, csv, parquet.")
COLUMNS = typer.Option(None, "--columns",
                       help="Generic logs: user=COL,item=COL[,time=COL][,behaviour=COL][,value=COL][,session=COL][,date=COL][,pscore=COL] "
                            "(COL: header name or 0-based position; no time: file order; pscore: logged exposure propensity in (0, 1]).")  # fmt: skip
SEP = typer.Option(None, "--sep", callback=unescape_sep, help="Generic text logs: field separator (default ',', tab for .tsv; '\\t' means a tab).")
MIN_VALUE = typer.Option(default_of(PrepConfig, "min_value"), "--min-value", help="Keep events with value >= this (e.g. 4 for ratings >= 4).")
POSITIVE = typer.Option(default_of(PrepConfig, "positive"), "--positive",
                        help="Which events are positive feedback: value>=X | value>X | value==X | behaviour==NAME; the rest become "
                             "real negatives (behaviour 'negative', shown and not clicked), e.g. 'value>=4' on ratings.")  # fmt: skip
DEBIAS = typer.Option(default_of(SimulatorConfig, "debias"), "--debias",
                      help="Simulator fit: none | ips | snips: weight the click model's loss by inverse exposure propensities "
                           "(the log's pscore column, else an item-popularity exposure model; see SimulatorConfig.debias).")  # fmt: skip
DEVICE = typer.Option("cpu", "--device", help="auto | cpu | cuda | cuda:N: where the model trains (auto: CUDA when present; the CPU is the tested default).")
