"""Streaming reader: delimited-text and Parquet event logs -> a columnar :class:`InteractionTable`.

The raw log is never held whole. Polars scans each file lazily — only the mapped columns,
typed — and hands it over in record batches; each batch is checked and reduced to compact
arrays (raw int64 ids or int32 codes of string ids, int64 seconds, behaviour codes, float32
values) before the next is read, so memory is ~25 bytes per event whatever the width of the
raw rows. Several files (``part-*.parquet``, a folder of CSVs) are read one after another
into the same table.

Errors stay one line naming file, line and column. Missing cells and blank lines are found
in the batches themselves (their row number is their line). A file the typed parse rejects
(a bad number, a ragged row, a wrong encoding) is re-read in chunks by the exact validators of
:mod:`seqrec.data.validate`, which name the first bad cell; if they find none (ids that look
numeric for the first 10,000 rows and are text later), the file is read again with its id
and time columns as text.

Why Polars: on the 5M-event benchmark log (2 shared cores) its typed CSV scan took 0.7 s
where pandas took 1.2 s, pyarrow's streaming reader 1.4–2.3 s and DuckDB 1.4 s (see
``benchmarks/HISTORY.md``); the index work after the scan (codes, k-core, the stable sort)
is faster in numpy than in any of the three engines' own sorts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import polars as pl

from seqrec.data import validate
from seqrec.data.table import NO_TIME_NOTE, InteractionTable, align_features, behaviour_vocabulary
from seqrec.infra.errors import DataFormatError, SeqrecError

if TYPE_CHECKING:
    from seqrec.data.readers import ColumnMap

ID_FIELDS = ("user", "item", "session")
TIME_FIELDS = ("time", "date")
FLOAT_FIELDS = ("value", "pscore")
#: fields in the order their cells are checked (the order of the one-line errors)
FIELD_ORDER = ("item", "session", "user", "time", "date", "behaviour", "value", "pscore")
_INFER_ROWS = 10_000
_DIAGNOSE_ROWS = 1 << 20
_DENSE_RANGE = 1 << 22


def default_sep(path: Path, sep: str | None) -> str:
    """The field separator: ``sep``, else tab for ``.tsv``, else comma."""
    return sep or ("\t" if path.suffix.lower() == ".tsv" else ",")


# ----------------------------------------------------------------------------- per-file batches


@dataclass
class _Chunks:
    """What one file contributed, kept apart until the file is read without error.

    ``ints[f]``: raw int64 ids; ``text[f]``: ``(codes int32, uniques)`` of string ids per batch.
    """

    ints: dict[str, list[np.ndarray]] = field(default_factory=dict)
    text: dict[str, list[tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    values: dict[str, list[np.ndarray]] = field(default_factory=dict)
    rows: int = 0

    def add(self, store: dict, name: str, item: object) -> None:
        store.setdefault(name, []).append(item)


class _File:
    """Reads one file's batches into :class:`_Chunks`, checking every cell.

    :param labels: how each field's column is named in errors (the user's header name or position).
    :param first: the line (Parquet: row) number of the first data row.
    """

    def __init__(self, path: Path, labels: dict[str, str], first: int):
        self.path, self.labels, self.first = path, labels, first
        self.chunks = _Chunks()
        self.blank_line: int | None = None  # first blank line not yet followed by data

    def line(self, row: int) -> int:
        """The 1-based line (Parquet: row) of the current batch's ``row``-th data row."""
        return self.first + self.chunks.rows + row

    def add_batch(self, df: pl.DataFrame) -> None:
        """Check and keep one batch (columns named by field)."""
        df = self._drop_blank(df.with_columns(pl.col(pl.String).str.strip_chars()))
        for name in FIELD_ORDER:
            if name not in df.columns:
                continue
            col = df.get_column(name)
            if name in ID_FIELDS:
                self._ids(name, col)
            elif name in TIME_FIELDS:
                self.chunks.add(self.chunks.values, name, self._seconds(name, col))
            elif name == "behaviour":
                self.chunks.add(self.chunks.text, name, _factorize(col))
            else:
                values = col.cast(pl.Float64).to_numpy()
                if name == "pscore":
                    validate.check_propensities(values, self.path, self.line(0), self.labels[name])
                self.chunks.add(self.chunks.values, name, values)
        self.chunks.rows += df.height

    def _drop_blank(self, df: pl.DataFrame) -> pl.DataFrame:
        """Raise at a missing cell or an inner blank line; drop trailing blank lines."""
        strings = [c for c in df.columns if df.schema[c] == pl.String]
        n_holes = sum(df.null_count().row(0)) + sum(int((df.get_column(c) == "").sum()) for c in strings)
        if not n_holes:
            self._no_blank_before()
            return df
        holes = df.select([pl.col(c).is_null() | ((pl.col(c) == "") if c in strings else pl.lit(False)) for c in df.columns]).to_numpy()
        blank = holes.all(axis=1)
        if not blank.all():
            self._no_blank_before()
        partial = holes.any(axis=1) & ~blank
        if partial.any():
            row = int(np.argmax(partial))
            name = next(n for n in FIELD_ORDER if n in df.columns and holes[row, df.columns.index(n)])
            raise DataFormatError(self.path, "missing value (truncated line?)", line=self.line(row), column=self.labels[name])
        data = np.flatnonzero(~blank)
        if len(data) and blank[: data[-1]].any():
            raise DataFormatError(self.path, "empty line", line=self.line(int(np.argmax(blank[: data[-1]]))))
        if self.blank_line is None:
            self.blank_line = self.line(int(np.argmax(blank)))  # the rest are trailing blank lines
        return df.filter(pl.Series(~blank))

    def _no_blank_before(self) -> None:
        """Data after an earlier batch's blank line make that an inner blank line."""
        if self.blank_line is not None:
            raise DataFormatError(self.path, "empty line", line=self.blank_line)

    def _ids(self, name: str, col: pl.Series) -> None:
        if col.dtype.is_integer():
            self.chunks.add(self.chunks.ints, name, col.cast(pl.Int64).to_numpy())
        else:
            self.chunks.add(self.chunks.text, name, _factorize(col.cast(pl.String)))

    def _seconds(self, name: str, col: pl.Series) -> np.ndarray:
        """Event times in whole seconds, shape (n,) int64."""
        if col.dtype.is_integer():
            return col.cast(pl.Int64).to_numpy()
        if col.dtype.is_float():
            return np.floor(col.to_numpy()).astype(np.int64)
        if col.dtype == pl.Datetime or col.dtype == pl.Date:
            return col.cast(pl.Datetime("us")).dt.epoch("s").to_numpy().astype(np.int64)
        return validate.times(pd.Series(col.cast(pl.String).to_numpy(), dtype=object), self.path, self.line(0), self.labels[name])


def _factorize(col: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """A string column's codes (n,) int32 into its distinct values (k,) object, in first-seen order."""
    uniques = col.unique(maintain_order=True)
    return col.cast(pl.Enum(uniques)).to_physical().to_numpy().astype(np.int32), uniques.to_numpy().astype(object)


# ----------------------------------------------------------------------------- whole log


class _Log:
    """Merges the files' chunks and turns them into the canonical columns at the end."""

    def __init__(self, fields: dict[str, str]):
        self.fields = fields
        self.files: list[_Chunks] = []

    def finish(self, source: str, item_features: pd.DataFrame | None = None) -> InteractionTable:
        """The canonical table: sorted-id codes, behaviour codes in funnel order, defaults filled."""
        n = sum(c.rows for c in self.files)
        if n == 0:
            raise SeqrecError(f"{source}: no data rows")
        cols: dict[str, np.ndarray] = {}
        ids: dict[str, np.ndarray] = {}
        for name in ID_FIELDS:
            if name in self.fields:
                cols[name], ids[name] = self._codes(name)
        if "user" not in cols:  # anonymous sessions: each session is a user
            cols["user"], ids["user"] = cols["session"], ids["session"]
        notes = []
        if "time" in self.fields:
            ts = self._concat("time", np.int64)
            if "date" in self.fields:
                ts += self._concat("date", np.int64)
        else:  # user, item, rating triplets: file order is the only order there is
            ts, notes = np.arange(n, dtype=np.int64), [NO_TIME_NOTE]
        cols["ts"] = ts
        if "behaviour" in self.fields:
            codes, raw = self._text_codes("behaviour")
            names = behaviour_vocabulary(raw)
            lookup = {b: i for i, b in enumerate(names)}
            cols["behaviour"] = np.array([lookup[b] for b in raw], np.int8)[codes]
        else:
            names, cols["behaviour"] = ["interaction"], np.zeros(n, np.int8)
        cols["value"] = self._concat("value", np.float32) if "value" in self.fields else np.ones(n, np.float32)
        if "session" in cols:
            cols["session"] = cols.pop("session").astype(np.int64)
        if "pscore" in self.fields:
            cols["pscore"] = self._concat("pscore", np.float32)
        table = {k: cols[k] for k in ("user", "item", "ts", "behaviour", "value", "session", "pscore") if k in cols}
        feats, feat_names, _ = align_features(ids["item"], ids["user"], item_features, None)
        return InteractionTable(table, ids["user"], ids["item"], names, feats, feat_names, None, source, notes)

    def _concat(self, name: str, dtype: type) -> np.ndarray:
        return np.concatenate([a for c in self.files for a in c.values.get(name, [])]).astype(dtype, copy=False)

    def _codes(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Codes (n,) int32 ranked by the sorted raw id, and the raw ids: numeric order when all are integers."""
        if not any(name in c.text for c in self.files):
            return int_codes(np.concatenate([a for c in self.files for a in c.ints[name]]))
        for c in self.files:  # a file whose ids were all numeric, beside one with text ids
            if name in c.ints:
                c.text[name] = [pd.factorize(a.astype(str)) for a in c.ints.pop(name)]
        codes, raw = self._text_codes(name)
        num = pd.to_numeric(pd.Series(raw, dtype=object), errors="coerce")
        if num.notna().all() and (num == np.floor(num)).all():  # "12", " 7", "3.0": numeric ids
            final, uniques = pd.factorize(num.to_numpy(np.int64), sort=True)
        else:
            final, uniques = pd.factorize(raw, sort=True)
        return final.astype(np.int32)[codes], np.asarray(uniques)

    def _text_codes(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Codes (n,) int32 in first-seen order over all batches, and the distinct strings."""
        vocab: dict[str, int] = {}
        parts = []
        for c in self.files:
            for codes, uniques in c.text.get(name, []):
                lookup = np.array([vocab.setdefault(u, len(vocab)) for u in uniques.tolist()], np.int32)
                parts.append(lookup[codes])
            c.text.pop(name, None)
        return np.concatenate(parts), np.array(list(vocab), dtype=object)


def int_codes(raw: np.ndarray, block: int = 1 << 23) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous codes of integer ids ranked by value: ``(codes (n,) int32, uniques (k,) int64)``.

    Ids within a moderate range (most logs number their users and items densely) are ranked by
    one presence table, O(n) with no hashing or sorting; sparse ones by ``pd.factorize``.
    """
    lo, hi = int(raw.min()), int(raw.max())
    if hi - lo > max(2 * len(raw), _DENSE_RANGE):
        codes, uniques = pd.factorize(raw, sort=True)
        return codes.astype(np.int32), np.asarray(uniques, np.int64)
    present = np.zeros(hi - lo + 1, bool)
    for s in range(0, len(raw), block):
        present[raw[s : s + block] - lo] = True
    rank = np.cumsum(present, dtype=np.int32) - 1
    codes = np.empty(len(raw), np.int32)
    for s in range(0, len(raw), block):
        codes[s : s + block] = rank[raw[s : s + block] - lo]
    return codes, np.flatnonzero(present).astype(np.int64) + lo


# ----------------------------------------------------------------------------- readers


def _names(path: Path, names: list[str], fields: dict[str, str | int], sep: str) -> dict[str, str]:
    """Source column name of each field (positions resolved), raising when one is absent."""
    out = {}
    for key, col in fields.items():
        validate.check_column(names, col, path, sep)
        out[key] = names[col] if isinstance(col, int) else col
    return out


def _csv_scan(path: Path, sep: str, header: bool, overrides: dict[str, pl.DataType] | None = None) -> pl.LazyFrame:
    return pl.scan_csv(path, separator=sep, has_header=header, quote_char=None if sep == "\t" else '"',
                       infer_schema_length=_INFER_ROWS, schema_overrides=overrides)  # fmt: skip


def _csv_types(schema: pl.Schema, names: dict[str, str], text: bool) -> dict[str, pl.DataType]:
    """The types to parse each mapped column with: integers stay integers, the rest as noted."""
    out: dict[str, pl.DataType] = {}
    for key, col in names.items():
        kind = schema[col]
        if key in FLOAT_FIELDS:
            out[col] = pl.Float64
        elif key == "behaviour" or text:
            out[col] = pl.String
        elif key in ID_FIELDS:
            out[col] = pl.Int64 if kind.is_integer() else pl.String
        else:  # time, date
            out[col] = pl.Int64 if kind.is_integer() else pl.Float64 if kind.is_float() else pl.String
    return out


def _read_csv(path: Path, fields: dict[str, str | int], sep: str, header: bool) -> _Chunks:
    """One delimited file: the typed fast path, then the diagnosis and the text path on failure."""
    _check_not_empty(path)
    for text in (False, True):
        try:
            lazy = _csv_scan(path, sep, header)
            schema = lazy.collect_schema()
            names = _names(path, schema.names(), fields, sep)
            return _read_batches(path, _csv_scan(path, sep, header, _csv_types(schema, names, text)), names, fields, 2 if header else 1)
        except pl.exceptions.PolarsError as err:
            if text:
                raise DataFormatError(path, f"cannot parse: {str(err).splitlines()[0]}") from None
            diagnose_csv(path, fields, sep, header)  # raises at the first bad cell, if there is one
    raise AssertionError("unreachable")


def _read_batches(path: Path, lazy: pl.LazyFrame, names: dict[str, str], fields: dict[str, str | int], first: int) -> _Chunks:
    """Collect ``lazy`` batch by batch (in file order) into the file's chunks."""
    reader = _File(path, {k: str(v) for k, v in fields.items()}, first)
    for df in lazy.select([pl.col(col).alias(key) for key, col in names.items()]).collect_batches(maintain_order=True):
        reader.add_batch(df)
    if reader.chunks.rows == 0:
        raise DataFormatError(path, "file has no data rows")
    return reader.chunks


def _check_not_empty(path: Path) -> None:
    if path.stat().st_size == 0:
        raise DataFormatError(path, "file is empty")
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if not head.strip() and path.stat().st_size <= len(head):
        raise DataFormatError(path, "file is empty")


def diagnose_csv(path: Path, fields: dict[str, str | int], sep: str, header: bool) -> None:
    """Re-read ``path`` in chunks with the exact validators; raise the one-line error of the first bad cell.

    Returns when every cell is valid (the fast parse failed for a reason that is not an
    error, e.g. ids that are numbers for the first rows and text later).
    """
    validate.check_encoding(path)
    first = 2 if header else 1
    blank_line = None
    try:
        chunks = pd.read_csv(path, sep=sep, header=0 if header else None, dtype=str, keep_default_na=False, na_values=[],
                             skip_blank_lines=False, engine="c", quoting=3 if sep == "\t" else 0, chunksize=_DIAGNOSE_ROWS)  # fmt: skip
        for chunk in chunks:
            blank = (chunk.isna() | (chunk == "")).all(axis=1).to_numpy()
            if blank_line is not None and not blank.all():
                raise DataFormatError(path, "empty line", line=blank_line)
            data = np.flatnonzero(~blank)
            if len(data) and blank[: data[-1]].any():
                raise DataFormatError(path, "empty line", line=first + int(np.argmax(blank[: data[-1]])))
            if blank.any() and blank_line is None:
                blank_line = first + (int(data[-1]) + 1 if len(data) else 0)
            rows = chunk.iloc[: int(data[-1]) + 1 if len(data) else 0]
            for key in (k for k in FIELD_ORDER if k in fields):
                _validate(path, validate.column(rows, fields[key], path, sep), first, key, fields[key])
            first += len(chunk)
    except pd.errors.ParserError as err:
        raise validate.ragged_error(path, err) from None


def _validate(path: Path, series: pd.Series, first: int, key: str, col: str | int) -> None:
    """The exact check of one field's cells in one chunk (raises at the first bad one)."""
    if key in TIME_FIELDS:
        validate.times(series, path, first, col)
    elif key == "pscore":
        validate.propensities(series, path, first, col)
    elif key in FLOAT_FIELDS:
        validate.numbers(series, path, first, col, integer=False)
    else:
        bad = validate.missing(series)
        if bad.any():
            validate.fail_at(path, series, bad, first, "a behaviour" if key == "behaviour" else "an id", col)


def _read_parquet(path: Path, fields: dict[str, str | int]) -> _Chunks:
    """One Parquet file, batch by batch (row numbers stand in the error's line slot)."""
    try:
        lazy = pl.scan_parquet(path)
        schema = lazy.collect_schema()
        names = _names(path, schema.names(), fields, "parquet")
        casts = []
        for key, col in names.items():
            expr = pl.col(col)
            kind = schema[col]
            if key in ID_FIELDS and not kind.is_integer():
                expr = expr.cast(pl.String)
            elif key == "behaviour" or (key in TIME_FIELDS and not (kind.is_numeric() or kind in (pl.Datetime, pl.Date))):
                expr = expr.cast(pl.String)
            casts.append(expr.alias(col))
        return _read_batches(path, lazy.with_columns(casts), names, fields, 1)
    except (pl.exceptions.PolarsError, OSError) as err:
        raise DataFormatError(path, f"not a readable Parquet file ({type(err).__name__}: {str(err).splitlines()[0]})") from None


def scan_log(files: list[Path], columns: "ColumnMap", *, kind: str, sep: str | None = None, source: str = "",
             extras: dict[str, str] | None = None, item_features: pd.DataFrame | None = None) -> InteractionTable:
    """Stream ``files`` (one log, in this order) into a columnar table.

    :param files: delimited-text files (``kind="csv"``) or Parquet files (``kind="parquet"``).
    :param columns: the :class:`~seqrec.data.readers.ColumnMap` of every file.
    :param sep: text files only: one-character field separator (default: comma, tab for ``.tsv``).
    :param extras: further fields to carry (field -> column), beside those of ``columns``.
    :param item_features: side features indexed by raw item id, aligned to the result's items.
    """
    fields = {**columns.used(), **(extras or {})}
    log = _Log({k: str(v) for k, v in fields.items()})
    for path in files:
        if kind == "parquet":
            log.files.append(_read_parquet(path, fields))
        else:
            s = default_sep(path, sep)
            log.files.append(_read_csv(path, fields, s, header=not columns.positional))
    return log.finish(source or str(files[0]), item_features)
