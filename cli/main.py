"""The ``seqrec`` command line: the app that mounts every command group of :mod:`seqrec.cli`.

This module is the only place that reads ``sys.argv``. Errors derived from
:class:`~seqrec.infra.errors.SeqrecError` (and other ``ValueError``/``OSError``) print one
line and exit with status 2; ``--debug`` re-raises them with the full traceback.
"""

from __future__ import annotations

import sys

import typer

from seqrec.cli.data import app as data_app
from seqrec.cli.encoder import app as encoder_app
from seqrec.cli.encoder import pretrain_command
from seqrec.cli.ope import app as ope_app
from seqrec.cli.simulator import app as simulator_app
from seqrec.cli.sweep import sweep_command
from seqrec.cli.workflow import demo_command, evaluate_command, prepare_command, train_command
from seqrec.infra.errors import SeqrecError

app = typer.Typer(
    name="seqrec",
    help="Train and compare recommendation policies in a user simulator fitted from logged data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data_app, name="data")
app.add_typer(simulator_app, name="simulator")
app.command("pretrain")(pretrain_command)
app.add_typer(encoder_app, name="encoder")
app.command("prepare")(prepare_command)
app.command("train")(train_command)
app.command("evaluate")(evaluate_command)
app.command("demo")(demo_command)
app.command("sweep")(sweep_command)
app.add_typer(ope_app, name="ope")


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    """seqrec: sequential recommendation environments and agents (--debug is read by main())."""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``seqrec`` console script; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        app(args=args, prog_name="seqrec", standalone_mode=True)
    except SystemExit as exc:  # help, usage errors (2) and normal completion
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except (SeqrecError, ValueError, OSError, KeyError) as err:
        if "--debug" in args:
            raise
        text = str(err).strip()
        msg = text.splitlines()[0] if text else type(err).__name__
        print(f"seqrec: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("seqrec: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
