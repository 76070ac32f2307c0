"""Errors that reach the user as one line.

Every error seqrec raises for bad input derives from :class:`SeqrecError` (itself a
``ValueError`` so Gymnasium- and numpy-style ``except ValueError`` still works). The
CLI prints ``str(err)`` on one line and exits non-zero; ``--debug`` shows the traceback.
"""

from __future__ import annotations

from pathlib import Path


class SeqrecError(ValueError):
    """Bad input or state that the user can fix; the message is one line."""


class DataFormatError(SeqrecError):
    """A log file that cannot be parsed: names the file, and the line and column when known."""

    def __init__(self, path: str | Path, reason: str, line: int | None = None, column: str | None = None):
        where = str(path)
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {reason}")
        self.path, self.line, self.column, self.reason = str(path), line, column, reason


class CheckpointError(SeqrecError):
    """A checkpoint that is missing, corrupted, of another format version or made for other data."""
