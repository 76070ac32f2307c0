"""Cell validators shared by every reader: each raises a one-line error naming file, line and column.

They take a block of string cells (a ``pd.Series`` of ``str``) and ``first``, the 1-based line
number of the block's first row, so the same checks serve a whole small file (the MovieLens and
RecBole readers) and one chunk of a large one (the streaming reader's diagnosis pass, which
re-reads a file the fast parser rejected to find out where and why).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from seqrec.infra.errors import DataFormatError

_BLOCK = 1 << 24  # bytes per read when scanning a file's encoding


def read_header(path: Path) -> str:
    """The first line of ``path`` (undecodable bytes replaced), without its newline."""
    with open(path, "rb") as fh:
        return fh.readline().decode("utf-8", errors="replace").strip()


def check_encoding(path: Path, encoding: str = "utf-8") -> None:
    """Decode ``path`` block by block; raise at the first undecodable byte with its line number.

    Reads 16 MiB at a time and decodes whole lines only (a newline byte is never part of a
    multi-byte character), so a bad byte deep in a large file costs no more memory than one at
    its start.
    """
    lines, carry = 0, b""
    with open(path, "rb") as fh:
        while True:
            block = fh.read(_BLOCK)
            data = carry + block
            cut = len(data) if not block else data.rfind(b"\n") + 1
            chunk, carry = data[:cut], data[cut:]
            try:
                chunk.decode(encoding)
            except UnicodeDecodeError as err:
                raise DataFormatError(path, f"cannot decode byte 0x{chunk[err.start]:02x} as {encoding} (wrong encoding?)",
                                      line=lines + chunk.count(b"\n", 0, err.start) + 1) from None  # fmt: skip
            lines += chunk.count(b"\n")
            if not block:
                return


def ragged_error(path: Path, err: Exception) -> DataFormatError:
    """Turn a pandas ``ParserError`` into the one-line error, with the line when pandas names it."""
    match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(err))
    if match:
        want, line, saw = (int(g) for g in match.groups())
        return DataFormatError(path, f"ragged line: expected {want} fields, found {saw}", line=line)
    return DataFormatError(path, f"cannot parse: {str(err).splitlines()[0]}")


def column(frame: pd.DataFrame, col: str | int, path: Path, sep: str) -> pd.Series:
    """Select ``col`` (a header name or a position) or raise naming what is there."""
    check_column(list(frame.columns), col, path, sep)
    return frame.iloc[:, col] if isinstance(col, int) else frame[col]


def check_column(names: list, col: str | int, path: Path, sep: str) -> None:
    """Raise the one-line error when ``col`` is not among the file's columns ``names``."""
    hint = " — wrong separator? pass --sep" if len(names) == 1 else ""
    if isinstance(col, int):
        if col >= len(names):
            raise DataFormatError(path, f"needs column {col} but rows have {len(names)} field(s) separated by {sep!r}{hint}", line=1)
    elif col not in names:
        have = ", ".join(map(str, names[:12]))
        raise DataFormatError(path, f"no column {col!r} in the header (found: {have}){hint}", line=1)


def missing(series: pd.Series) -> np.ndarray:
    """Cells that are absent or blank, shape (n,) bool."""
    return (series.isna() | (series.astype(str).str.strip() == "")).to_numpy()


def fail_at(path: Path, series: pd.Series, bad: np.ndarray, first: int, what: str, col: str | int) -> None:
    """Raise for the first ``bad`` cell: a missing value, or a value that is not ``what``."""
    k = int(np.argmax(bad))
    value = series.iloc[k]
    reason = "missing value (truncated line?)" if missing(series.iloc[[k]])[0] else f"{value!r} is not {what}"
    raise DataFormatError(path, reason, line=first + k, column=str(col))


def numbers(series: pd.Series, path: Path, first: int, col: str | int, integer: bool) -> np.ndarray:
    """Parse a numeric column, raising at the first bad cell with its line number."""
    num = pd.to_numeric(series.str.strip(), errors="coerce")
    bad = num.isna().to_numpy()
    if not bad.any() and integer:
        bad = (num != np.floor(num)).to_numpy()
    if bad.any():
        fail_at(path, series, bad, first, "an integer" if integer else "a number", col)
    return num.to_numpy(np.int64 if integer else np.float64)


def tokens(series: pd.Series, path: Path, first: int, col: str | int) -> pd.Series:
    """Ids that may be any non-empty string (numeric ones become int64 for numeric order)."""
    bad = missing(series)
    if bad.any():
        fail_at(path, series, bad, first, "an id", col)
    stripped = series.str.strip()
    num = pd.to_numeric(stripped, errors="coerce")
    if num.notna().all() and (num == np.floor(num)).all():
        return num.astype(np.int64)
    return stripped


def times(series: pd.Series, path: Path, first: int, col: str | int) -> np.ndarray:
    """Seconds from a numeric column, or from date/time strings, shape (n,) int64."""
    bad = missing(series)
    if bad.any():
        fail_at(path, series, bad, first, "a time", col)
    num = pd.to_numeric(series.str.strip(), errors="coerce")
    if num.notna().all():
        return np.floor(num.to_numpy(np.float64)).astype(np.int64)
    if num.notna().iloc[0]:  # a numeric time column with a bad cell
        fail_at(path, series, num.isna().to_numpy(), first, "a number", col)
    parsed = pd.to_datetime(series.str.strip(), errors="coerce", format="mixed", utc=True)
    bad = parsed.isna().to_numpy()
    if bad.any():
        fail_at(path, series, bad, first, "a number or a date/time", col)
    # resolution-independent (pandas 3 may parse to s, ms, us or ns)
    return ((parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(1, "s")).to_numpy(np.int64)


def propensities(series: pd.Series, path: Path, first: int, col: str | int) -> np.ndarray:
    """A ``pscore`` column: numbers in (0, 1], shape (n,) float64; raises at the first bad cell."""
    values = numbers(series, path, first, col, integer=False)
    check_propensities(values, path, first, col)
    return values


def check_propensities(values: np.ndarray, path: Path, first: int, col: str | int) -> None:
    """Raise the one-line error at the first propensity outside (0, 1] (NaN included); ``first`` is its line."""
    bad = ~((values > 0) & (values <= 1))
    if bad.any():
        k = int(np.argmax(bad))
        raise DataFormatError(path, f"pscore {values[k]:g} is not a propensity in (0, 1]", line=first + k, column=str(col))
