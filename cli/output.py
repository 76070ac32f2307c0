"""What the commands print: a rich table on a terminal, a plain unwrapped layout in a log.

A rich table squeezed into a log's 80 columns wraps every cell over several lines; in a
log (stdout not a terminal) the same rows are printed as aligned plain text instead, one
line per row however wide it is.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from rich.console import Console

from seqrec.infra.progress import interactive

__all__ = ["console", "plain_table", "show_table"]

console = Console(highlight=False)


def plain_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """``title``, then the header and rows as left-aligned columns two spaces apart."""
    cells = [list(map(str, header))] + [list(map(str, r)) for r in rows]
    widths = [max(len(row[i]) for row in cells if i < len(row)) for i in range(len(cells[0]))]
    line = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()  # noqa: E731
    out = [title, line(cells[0]), "  ".join("-" * w for w in widths)] + [line(r) for r in cells[1:]]
    return "\n".join(out)


def show_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]], *, show_header: bool = True) -> None:
    """Print a table: rich on a terminal, :func:`plain_table` otherwise."""
    if not interactive(sys.stdout):
        body = plain_table(title, header, rows)
        if not show_header:  # key/value listings: no header line
            first, _, _, *rest = body.splitlines()
            body = "\n".join([first, *rest])
        print(body, flush=True)
        return
    from rich.table import Table

    table = Table(title=title, show_header=show_header)
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*map(str, row))
    console.print(table)
