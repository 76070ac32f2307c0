"""The ``seqrec`` command line.

Sub-command groups are defined next to the code they drive (``seqrec.data.cli`` …) and
mounted here; this module is the only place that reads ``sys.argv``. Errors derived from
:class:`~seqrec.data.errors.SeqrecError` (and other ``ValueError``/``OSError``) print one
line and exit with status 2; ``--debug`` re-raises them with the full traceback.
"""

from __future__ import annotations

import sys

import typer

from seqrec.agents.commands import evaluate_command, prepare_command, train_command
from seqrec.data.cli import app as data_app
from seqrec.data.errors import SeqrecError

app = typer.Typer(
    name="seqrec",
    help="Train and compare recommendation policies in a user simulator fitted from logged data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data_app, name="data")
app.command("prepare")(prepare_command)
app.command("train")(train_command)
app.command("evaluate")(evaluate_command)

_STATE = {"debug": False}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    """seqrec: sequential recommendation environments and agents."""
    _STATE["debug"] = debug


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``seqrec`` console script; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        app(args=args, prog_name="seqrec", standalone_mode=False)
    except (SeqrecError, ValueError, OSError, KeyError) as err:
        if debug:
            raise
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"seqrec: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("seqrec: interrupted", file=sys.stderr)
        return 130
    except typer.Exit as exc:  # raised by --help and explicit exits
        return exc.exit_code
    except Exception as err:  # click usage errors and the like
        import click

        if isinstance(err, click.exceptions.ClickException):
            err.show()
            return err.exit_code
        if isinstance(err, click.exceptions.Abort):
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
