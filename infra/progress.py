"""Progress bars that suit both a terminal and a log file.

On a terminal, :func:`progress` is an ordinary ``tqdm`` bar redrawn in place. When the
stream is not a terminal (CI, ``seqrec … > log 2>&1``) a redrawn bar becomes thousands of
carriage-return updates in one unreadable line, so the bar instead writes one whole line
at most every :data:`LOG_INTERVAL_S` seconds, plus the final line when it closes.

>>> import io
>>> log = io.StringIO()
>>> with progress(total=3, desc="fit", unit="epoch", file=log) as bar:
...     for _ in range(3):
...         bar.update(1)
>>> lines = log.getvalue().splitlines()
>>> lines[-1].startswith("fit: 100%") and all("\\r" not in line for line in lines)
True
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

from tqdm.auto import tqdm

__all__ = ["LOG_INTERVAL_S", "interactive", "progress"]

LOG_INTERVAL_S = 10.0
"""Seconds between two lines of a progress bar written to a log."""


def interactive(stream: IO[str] | None = None) -> bool:
    """Whether ``stream`` (default: stderr) is a terminal that can redraw a line in place."""
    stream = sys.stderr if stream is None else stream
    return bool(getattr(stream, "isatty", lambda: False)())


class _LogLines(tqdm):
    """A tqdm bar that writes a refresh as its own line, at most every ``LOG_INTERVAL_S``
    seconds (``set_postfix`` refreshes on every call), and always its first and last."""

    _last_line = -float("inf")
    _closing = False

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        text = self.__str__() if msg is None else msg
        now = time.monotonic()
        if not text.strip() or (not self._closing and now - self._last_line < LOG_INTERVAL_S):
            return True  # tqdm asks for '' to clear a bar: a log keeps its lines
        self._last_line = now
        self.fp.write(text.strip() + "\n")
        self.fp.flush()
        return True

    def close(self) -> None:
        if self.disable:
            return
        self._closing = True
        fp, self.fp = self.fp, _DropBareNewlines(self.fp)  # tqdm.close() ends the bar with a bare "\n"
        try:
            super().close()
        finally:
            self.fp = fp


class _DropBareNewlines:
    def __init__(self, fp: Any) -> None:
        self._fp = fp

    def write(self, s: str) -> None:
        if s.strip():
            self._fp.write(s)

    def flush(self) -> None:
        self._fp.flush()


def progress(total: int | None = None, desc: str = "", unit: str = "it", *, disable: bool = False,
             file: IO[str] | None = None, **kwargs: Any) -> tqdm:  # fmt: skip
    """A progress bar over ``total`` units: redrawn on a terminal, a line every few seconds in a log.

    :param total: expected number of updates (None: unknown).
    :param desc: the label before the bar.
    :param unit: what one update counts.
    :param disable: no output at all (the bar still counts).
    :param file: the stream (default stderr); whether it is a terminal decides the layout.
    :param kwargs: passed to ``tqdm`` (``initial``, ``unit_scale``, ``leave`` …).
    """
    stream = sys.stderr if file is None else file
    if interactive(stream):
        return tqdm(total=total, desc=desc, unit=unit, disable=disable, file=stream, dynamic_ncols=True, **kwargs)
    kwargs["leave"] = True  # a log keeps the final line
    return _LogLines(total=total, desc=desc, unit=unit, disable=disable, file=stream, ascii=True, ncols=100,
                     mininterval=LOG_INTERVAL_S, maxinterval=LOG_INTERVAL_S * 6, **kwargs)  # fmt: skip
