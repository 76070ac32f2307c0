"""Readers: raw logs in the common formats -> :class:`~seqrec.data.table.InteractionTable`.

Formats (``read_log(path, format=None)`` detects them from the path where unambiguous):

============== ==================================================================
``ml-100k``    a MovieLens 100K folder: ``u.data`` (tab, no header), ``u.item``
               (latin-1, 19 genre flags -> item features), ``u.user`` (user features)
``ml-dat``     MovieLens 1M/10M ``ratings.dat`` (``::``-separated); genres from ``movies.dat``
``ml-csv``     MovieLens latest/20M/25M ``ratings.csv`` (header); genres from ``movies.csv``
``recbole``    a RecBole atomic ``.inter`` file (tab, typed header ``name:type``)
``synthetic``  a folder written by ``seqrec data synth`` (``events.csv`` + ``synth.json``)
``csv``        a generic delimited event log (a file, or a folder of them), mapped with ``columns``
``parquet``    a generic Parquet event log (a file, or a folder: ``part-*.parquet``), mapped with ``columns``
============== ==================================================================

Generic logs and the synthetic ``events.csv`` are streamed (:mod:`seqrec.data.scan`): the raw
log is never held as a frame, so their size is bounded by the canonical columns (~25 bytes per
event). The MovieLens and RecBole readers parse their (small, fixed) formats with pandas.

Generic logs take a column mapping ``user=COL,item=COL[,time=COL][,behaviour=COL][,value=COL]
[,session=COL][,date=COL][,pscore=COL]``: COL is a header name, or a 0-based position for a
file without a header (``user=0,item=1,value=2`` reads a headerless rating triplet file). A
``session`` without a ``user`` makes each session its own sequence (anonymous session logs); a
``date`` column is added to ``time`` (an offset in seconds within the session). A log without
``time`` (user, item, rating triplets, as Coat and Yahoo! R3 are shared) is read in file order,
``ts`` = the row number, with a note in the preprocessing report. ``pscore`` is the logging
policy's propensity of each shown item, a number in (0, 1]. Every parse error names the file,
the line and the column.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from seqrec.infra.errors import DataFormatError, SeqrecError
from seqrec.data import validate
from seqrec.data.scan import default_sep, scan_log
from seqrec.data.table import NO_TIME_NOTE, InteractionTable, build_table

FORMATS = ("ml-100k", "ml-dat", "ml-csv", "recbole", "synthetic", "csv", "parquet")
COLUMN_KEYS = ("user", "item", "time", "behaviour", "value", "session", "date", "pscore")

ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)  # fmt: skip


@dataclass(frozen=True)
class ColumnMap:
    """Which source column holds each canonical field (names, or positions when headerless)."""

    user: str | int | None = None
    item: str | int | None = None
    time: str | int | None = None
    behaviour: str | int | None = None
    value: str | int | None = None
    session: str | int | None = None
    date: str | int | None = None
    pscore: str | int | None = None

    @classmethod
    def parse(cls, spec: str) -> "ColumnMap":
        """Parse ``"user=COL,item=COL[,time=COL],…"``; integers are positions."""
        fields: dict[str, str | int] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            key, sep, col = part.partition("=")
            key, col = key.strip(), col.strip()
            if not sep or not col:
                raise SeqrecError(f"--columns: {part!r} is not KEY=COLUMN")
            if key not in COLUMN_KEYS:
                raise SeqrecError(f"--columns: unknown key {key!r}; expected one of {', '.join(COLUMN_KEYS)}")
            fields[key] = int(col) if re.fullmatch(r"\d+", col) else col
        cmap = cls(**fields)
        if cmap.item is None or (cmap.user is None and cmap.session is None):
            raise SeqrecError("--columns must map item and user (or session)")
        if cmap.date is not None and cmap.time is None:
            raise SeqrecError("--columns: date=COL needs time=COL (the offset within the date)")
        kinds = {isinstance(v, int) for v in fields.values()}
        if len(kinds) > 1:
            raise SeqrecError("--columns: use either header names or 0-based positions, not both")
        return cmap

    def used(self) -> dict[str, str | int]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @property
    def positional(self) -> bool:
        return all(isinstance(v, int) for v in self.used().values())


# ----------------------------------------------------------------------------- detection


def detect_format(path: Path) -> str:
    """Name the format of ``path`` from its name and contents, or raise naming the options."""
    if not path.exists():
        raise SeqrecError(f"{path}: no such file or folder")
    if path.is_dir():
        for marker, fmt in (("u.data", "ml-100k"), ("synth.json", "synthetic"),
                            ("ratings.dat", "ml-dat"), ("ratings.csv", "ml-csv")):  # fmt: skip
            if (path / marker).exists():
                return fmt
        inter = sorted(path.glob("*.inter"))
        if len(inter) == 1:
            return "recbole"
        if log_parts(path, "parquet"):
            return "parquet"
        if log_parts(path, "csv"):
            return "csv"
        raise SeqrecError(f"{path}: cannot tell the format of this folder; pass --format ({', '.join(FORMATS)})")
    name, suffix = path.name, path.suffix.lower()
    if name == "u.data":
        return "ml-100k"
    if name == "ratings.dat":
        return "ml-dat"
    if suffix == ".inter":
        return "recbole"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if name == "ratings.csv" and validate.read_header(path).startswith("userId,movieId,rating,timestamp"):
        return "ml-csv"
    if suffix in (".csv", ".tsv", ".txt", ".dat"):
        return "csv"
    raise SeqrecError(f"{path}: unknown format {suffix or name!r}; pass --format ({', '.join(FORMATS)})")


PART_SUFFIXES = {"parquet": (".parquet", ".pq"), "csv": (".csv", ".tsv", ".txt")}


def log_parts(path: Path, fmt: str) -> list[Path]:
    """The files of a log: ``path`` itself, or a folder's ``fmt`` files in name order (``part-0000…``)."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in PART_SUFFIXES[fmt] and not p.name.startswith("."))


# ----------------------------------------------------------------------------- low-level parsing


def _read_delimited(path: Path, sep: str, header: bool, encoding: str = "utf-8") -> tuple[pd.DataFrame, int]:
    """Read a delimited text file as strings.

    :return: the frame (all ``object``) and the 1-based line number of its first data row.
    Blank lines at the end are dropped; a blank line elsewhere is an error.
    """
    raw = path.read_bytes()
    if not raw.strip():
        raise DataFormatError(path, "file is empty")
    try:
        raw.decode(encoding)
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise DataFormatError(path, f"cannot decode byte 0x{raw[err.start]:02x} as {encoding} (wrong encoding?)", line=line) from None
    if len(sep) > 1:  # the C parser takes one-character separators only
        raw = raw.replace(sep.encode(encoding), b"\x1f")
        sep = "\x1f"
    try:
        frame = pd.read_csv(
            io.BytesIO(raw), sep=sep, header=0 if header else None, dtype=str, keep_default_na=False,
            na_values=[], skip_blank_lines=False, encoding=encoding, engine="c", quoting=3 if sep == "\t" else 0,
        )  # fmt: skip
    except pd.errors.EmptyDataError:
        raise DataFormatError(path, "file has no data rows") from None
    except pd.errors.ParserError as err:
        raise validate.ragged_error(path, err) from None
    first = 2 if header else 1
    blank = frame.isna().all(axis=1).to_numpy() | (frame == "").all(axis=1).to_numpy()
    if blank.any():
        trailing = len(blank) - np.argmin(blank[::-1]) if not blank.all() else 0
        if blank[:trailing].any():
            raise DataFormatError(path, "empty line", line=first + int(np.argmax(blank[:trailing])))
        frame = frame.iloc[:trailing]
    if frame.empty:
        raise DataFormatError(path, "file has no data rows")
    return frame, first


# ----------------------------------------------------------------------------- format readers


def read_movielens_100k(path: Path) -> InteractionTable:
    """MovieLens 100K folder (or its ``u.data``): ratings, genres as item features, user features."""
    folder = path if path.is_dir() else path.parent
    data = folder / "u.data" if path.is_dir() else path
    if not data.exists():
        raise SeqrecError(f"{folder}: no u.data in this MovieLens 100K folder")
    frame, first = _read_delimited(data, "\t", header=False)
    if frame.shape[1] != 4:
        raise DataFormatError(data, f"expected 4 tab-separated fields (user, item, rating, time), found {frame.shape[1]}", line=first)
    names = ("user", "item", "rating", "timestamp")
    cols = [validate.numbers(frame.iloc[:, i], data, first, names[i], integer=True) for i in range(4)]
    raw = pd.DataFrame({"user": cols[0], "item": cols[1], "value": cols[2].astype(np.float32), "ts": cols[3], "behaviour": "rating"})
    item_features = user_features = None
    if (folder / "u.item").exists():
        items, ifirst = _read_delimited(folder / "u.item", "|", header=False, encoding="latin-1")
        if items.shape[1] != 5 + len(ML100K_GENRES):
            raise DataFormatError(folder / "u.item", f"expected {5 + len(ML100K_GENRES)} '|'-separated fields, found {items.shape[1]}", line=ifirst)
        ids = validate.numbers(items.iloc[:, 0], folder / "u.item", ifirst, "movie_id", integer=True)
        flags = items.iloc[:, 5:].apply(pd.to_numeric, errors="coerce").fillna(0).to_numpy(np.float32)
        item_features = pd.DataFrame(flags, index=ids, columns=[f"genre:{g}" for g in ML100K_GENRES])
    if (folder / "u.user").exists():
        users, ufirst = _read_delimited(folder / "u.user", "|", header=False, encoding="latin-1")
        ids = validate.numbers(users.iloc[:, 0], folder / "u.user", ufirst, "user_id", integer=True)
        user_features = pd.DataFrame(
            {"age": pd.to_numeric(users.iloc[:, 1], errors="coerce").to_numpy(), "gender": users.iloc[:, 2].to_numpy(),
             "occupation": users.iloc[:, 3].to_numpy()}, index=ids)  # fmt: skip
    return build_table(raw, source=str(folder), item_features=item_features, user_features=user_features)


def _genre_features(genres: pd.Series, ids: np.ndarray) -> pd.DataFrame:
    """Multi-hot features from ``Action|Comedy``-style genre strings."""
    hot = genres.fillna("").str.get_dummies(sep="|").astype(np.float32)
    hot.columns = [f"genre:{c}" for c in hot.columns]
    hot.index = ids
    return hot.drop(columns=[c for c in hot.columns if c == "genre:(no genres listed)"])


def read_movielens_ratings(path: Path, fmt: str) -> InteractionTable:
    """MovieLens ``ratings.dat`` (``::``, no header) or ``ratings.csv`` (header), with genres."""
    folder = path if path.is_dir() else path.parent
    data = folder / ("ratings.dat" if fmt == "ml-dat" else "ratings.csv") if path.is_dir() else path
    sep, header = ("::", False) if fmt == "ml-dat" else (",", True)
    frame, first = _read_delimited(data, sep, header=header)
    if frame.shape[1] < 4:
        raise DataFormatError(data, f"expected 4 {sep!r}-separated fields (user, item, rating, time), found {frame.shape[1]}", line=first)
    names = ("user", "item", "rating", "timestamp")
    user, item, ts = (validate.numbers(frame.iloc[:, i], data, first, names[i], integer=True) for i in (0, 1, 3))
    rating = validate.numbers(frame.iloc[:, 2], data, first, "rating", integer=False)
    raw = pd.DataFrame({"user": user, "item": item, "value": rating.astype(np.float32), "ts": ts, "behaviour": "rating"})
    movies = folder / ("movies.dat" if fmt == "ml-dat" else "movies.csv")
    item_features = None
    if movies.exists():
        if fmt == "ml-dat":
            mframe, mfirst = _read_delimited(movies, "::", header=False, encoding="latin-1")
            ids, genres = mframe.iloc[:, 0], mframe.iloc[:, 2]
        else:
            mframe = pd.read_csv(movies, dtype=str)
            mfirst, ids, genres = 2, mframe["movieId"], mframe["genres"]
        item_features = _genre_features(genres, validate.numbers(ids, movies, mfirst, "movieId", integer=True))
    return build_table(raw, source=str(data), item_features=item_features)


def read_recbole(path: Path) -> InteractionTable:
    """RecBole atomic ``.inter`` file: tab-separated, header ``name:type`` (token/float/…)."""
    data = path if path.is_file() else sorted(path.glob("*.inter"))[0]
    frame, first = _read_delimited(data, "\t", header=True)
    fields = {}
    for col in frame.columns:
        name, _, kind = str(col).partition(":")
        if not kind:
            raise DataFormatError(data, f"header field {col!r} has no ':type' (RecBole atomic files use name:type)", line=1)
        fields[name] = col
    pick = {"user": ("user_id", "session_id"), "item": ("item_id",), "ts": ("timestamp",), "value": ("rating", "label")}
    cmap = {}
    for key, options in pick.items():
        found = next((fields[o] for o in options if o in fields), None)
        if found is None and key in ("user", "item"):
            raise DataFormatError(data, f"no {' or '.join(o + ':token' for o in options)} field in the header", line=1)
        cmap[key] = found
    raw = pd.DataFrame({"user": validate.tokens(frame[cmap["user"]], data, first, cmap["user"]),
                        "item": validate.tokens(frame[cmap["item"]], data, first, cmap["item"])})  # fmt: skip
    raw["ts"] = (validate.times(frame[cmap["ts"]], data, first, cmap["ts"]) if cmap["ts"] else np.arange(len(frame), dtype=np.int64))
    if cmap["value"]:
        raw["value"] = validate.numbers(frame[cmap["value"]], data, first, cmap["value"], integer=False)
    return build_table(raw, source=str(data), notes=None if cmap["ts"] else [NO_TIME_NOTE])


def read_synthetic(path: Path) -> InteractionTable:
    """A folder from ``seqrec data synth``: the events (streamed) plus the item categories as features."""
    meta_path = path / "synth.json"
    try:
        json.loads(meta_path.read_text())
    except (OSError, ValueError) as err:
        raise SeqrecError(f"{meta_path}: unreadable synthetic-dataset metadata ({err})") from None
    events = path / "events.csv"
    header = validate.read_header(events).split(",")
    cmap = ColumnMap(user="user", item="item", time="ts", behaviour="behaviour", value="value",
                     session="session" if "session" in header else None, pscore="pscore" if "pscore" in header else None)  # fmt: skip
    item_features = None
    if (path / "items.csv").exists():
        items = pd.read_csv(path / "items.csv")
        item_features = pd.get_dummies(items["category"], prefix="category", dtype=np.float32)
        item_features.index = items["item"].to_numpy()
    return scan_log([events], cmap, kind="csv", sep=",", source=str(path), item_features=item_features)


def _generic_frame(frame: pd.DataFrame, first: int, path: Path, cmap: ColumnMap, sep: str) -> pd.DataFrame:
    """Map a string frame to raw canonical columns following ``cmap``."""
    get = lambda key: validate.column(frame, getattr(cmap, key), path, sep)  # noqa: E731
    raw = pd.DataFrame({"item": validate.tokens(get("item"), path, first, cmap.item)})
    if cmap.session is not None:
        raw["session"] = validate.tokens(get("session"), path, first, cmap.session)
    raw["user"] = validate.tokens(get("user"), path, first, cmap.user) if cmap.user is not None else raw["session"]
    if cmap.time is not None:  # else read_generic numbers the rows of all files
        ts = validate.times(get("time"), path, first, cmap.time)
        if cmap.date is not None:
            ts = ts + validate.times(get("date"), path, first, cmap.date)
        raw["ts"] = ts
    if cmap.behaviour is not None:
        behaviour = get("behaviour")
        bad = validate.missing(behaviour)
        if bad.any():
            validate.fail_at(path, behaviour, bad, first, "a behaviour", cmap.behaviour)
        raw["behaviour"] = behaviour.str.strip().to_numpy()
    if cmap.value is not None:
        raw["value"] = validate.numbers(get("value"), path, first, cmap.value, integer=False)
    if cmap.pscore is not None:
        raw["pscore"] = validate.propensities(get("pscore"), path, first, cmap.pscore)
    return raw


def read_generic(path: Path, columns: ColumnMap, sep: str | None = None) -> InteractionTable:
    """A generic CSV/TSV event log (a file or a folder of parts) mapped with ``columns``.

    Streamed batch by batch; a multi-character ``sep`` (``::``), which the streaming parser
    does not take, falls back to reading the whole file with pandas.
    """
    files = log_parts(path, "csv")
    if len(default_sep(files[0], sep)) == 1:
        return scan_log(files, columns, kind="csv", sep=sep, source=str(path))
    sep = default_sep(files[0], sep)
    frames = [_generic_frame(*_read_delimited(f, sep, header=not columns.positional), f, columns, sep) for f in files]
    raw = pd.concat(frames, ignore_index=True)
    if columns.time is None:
        raw["ts"] = np.arange(len(raw), dtype=np.int64)
    return build_table(raw, source=str(path), notes=None if columns.time is not None else [NO_TIME_NOTE])


def read_parquet(path: Path, columns: ColumnMap) -> InteractionTable:
    """A generic Parquet event log (a file, or a folder of ``part-*.parquet``) mapped with ``columns``.

    Parquet has no lines: errors report 1-based row numbers in the "line" slot.
    """
    return scan_log(log_parts(path, "parquet"), columns, kind="parquet", source=str(path))


def default_columns(path: Path, sep: str | None) -> ColumnMap:
    """Guess the mapping of a generic log (its first file, for a folder) whose header uses common names."""
    if path.is_dir():
        parts = log_parts(path, "parquet") or log_parts(path, "csv")
        if not parts:
            raise SeqrecError(f"{path}: no .parquet, .csv or .tsv files in this folder")
        path = parts[0]
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
    else:
        head = validate.read_header(path)
        names = [n.strip() for n in head.split(sep or ("\t" if path.suffix.lower() == ".tsv" else ","))]
    lower = {n.lower(): n for n in names}
    pick = lambda *opts: next((lower[o] for o in opts if o in lower), None)  # noqa: E731
    cmap = ColumnMap(
        user=pick("user", "user_id", "userid", "visitorid"), item=pick("item", "item_id", "itemid", "movieid"),
        time=pick("ts", "time", "timestamp", "datetime"), behaviour=pick("behaviour", "behavior", "event", "event_type"),
        value=pick("value", "rating"), session=pick("session", "session_id", "sessionid"),
        pscore=pick("pscore", "propensity"),
    )  # fmt: skip
    if cmap.item is None or (cmap.user is None and cmap.session is None):
        headerless = all(re.fullmatch(r"[-+.\deE]+", n) for n in names if n)
        hint = (" — this looks like a file without a header: name the columns by position, e.g. --columns user=0,item=1,value=2"
                if headerless else "; pass --columns user=COL,item=COL[,time=COL]")  # fmt: skip
        raise SeqrecError(f"{path}: cannot tell which columns hold user and item (header: {', '.join(names[:12])}){hint}")
    return cmap


def read_log(path: str | Path, format: str | None = None, columns: str | ColumnMap | None = None, sep: str | None = None) -> InteractionTable:
    """Read any supported log into an :class:`InteractionTable`.

    :param path: a file or a dataset folder.
    :param format: one of :data:`FORMATS`; detected from ``path`` when None.
    :param columns: generic logs only: a :class:`ColumnMap` or its ``user=COL,…`` string.
    :param sep: generic text logs only: the field separator (default: ``,``; tab for ``.tsv``).
    """
    path = Path(path)
    if columns is not None and format is None and path.is_file():
        format = "parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv"
    fmt = format or detect_format(path)
    if fmt not in FORMATS:
        raise SeqrecError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if not path.exists():
        raise SeqrecError(f"{path}: no such file or folder")
    if fmt in ("csv", "parquet"):
        if path.is_dir() and not log_parts(path, fmt):
            raise SeqrecError(f"{path}: no {fmt} files in this folder (expected e.g. part-0000.{'parquet' if fmt == 'parquet' else 'csv'})")
        cmap = ColumnMap.parse(columns) if isinstance(columns, str) else columns or default_columns(path, sep)
        return read_parquet(path, cmap) if fmt == "parquet" else read_generic(path, cmap, sep)
    readers = {
        "ml-100k": read_movielens_100k,
        "ml-dat": lambda p: read_movielens_ratings(p, "ml-dat"),
        "ml-csv": lambda p: read_movielens_ratings(p, "ml-csv"),
        "recbole": read_recbole,
        "synthetic": read_synthetic,
    }
    return readers[fmt](path)
