"""Logged bandit feedback: the rounds an off-policy estimator reads, and their Parquet file.

A :class:`LoggedFeedback` holds ``n`` logged rounds: the context the logging policy saw,
the action it took, the reward that followed and the probability it had of taking that
action (the propensity score, ``pscore``). ``seqrec ope`` evaluates target policies on it
with the estimators of :mod:`seqrec.ope.estimators`.

File format (version 1)
-----------------------
One Parquet file, one row per round.

==============  ==========  ========  =========================================================
column          Arrow type  required  meaning
==============  ==========  ========  =========================================================
``action``      int64       yes       logged action, in ``[0, n_actions)``
``reward``      float64     yes       observed reward, finite
``pscore``      float64     yes       logging propensity of the logged action, in ``(0, 1]``
``position``    int64       no        slot of the action in the shown list, ``>= 0``
``user``        int64       no        user id, ``>= 0``
``ctx_0`` ...   float32     no        context features ``ctx_0, ctx_1, ..., ctx_{d-1}``, finite
==============  ==========  ========  =========================================================

The context is stored as ``d`` plain float32 columns named ``ctx_0`` to ``ctx_{d-1}``
(not a list column), so any tool that writes a data frame can produce it; the columns
must be numbered contiguously from 0. Other columns are ignored. On reading, any integer
type is accepted for the integer columns (and floats holding whole numbers), and any
integer or float type for the float columns; nulls are errors.

Schema metadata (``pyarrow.Schema.metadata``, UTF-8 keys and values):

===============================  ========================================================
key                              value
===============================  ========================================================
``seqrec.n_actions``             size of the action set, a positive integer, e.g. ``"1000"``
``seqrec.propensity_source``     ``"known"`` (logged by the policy) or ``"estimated"`` (fitted)
``seqrec.format_version``        ``"1"``
===============================  ========================================================

Bringing your own logs: build a table with these columns, then attach the metadata, e.g.
with pandas and pyarrow::

    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata({
        **(table.schema.metadata or {}),
        "seqrec.n_actions": "1000", "seqrec.propensity_source": "known", "seqrec.format_version": "1",
    })
    pq.write_table(table, "logs.parquet")

or pass ``n_actions=`` / ``propensity_source=`` to :meth:`LoggedFeedback.from_parquet` for
a file without them. A bad file raises :class:`~seqrec.infra.errors.DataFormatError` (a
``SeqrecError``) naming the file, the column and the first bad row.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from seqrec.infra.atomic import atomic_write
from seqrec.infra.errors import DataFormatError, SeqrecError

__all__ = ["LoggedFeedback", "FORMAT_VERSION", "PROPENSITY_SOURCES"]

FORMAT_VERSION = 1
PROPENSITY_SOURCES = ("known", "estimated")

_META_N_ACTIONS = "seqrec.n_actions"
_META_PROPENSITY_SOURCE = "seqrec.propensity_source"
_META_FORMAT_VERSION = "seqrec.format_version"
_CTX_RE = re.compile(r"^ctx_(0|[1-9][0-9]*)$")


def _one_line(text: object) -> str:
    lines = str(text).strip().splitlines()
    return lines[0].strip() if lines else type(text).__name__


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


@dataclass(kw_only=True, eq=False)
class LoggedFeedback:
    """Logged bandit feedback: ``n_rounds`` rounds of (context, action, reward, pscore).

    Arrays are converted to the dtypes below on construction and validated; a bad one
    raises :class:`~seqrec.infra.errors.SeqrecError` naming the field.

    :param action: int64, shape ``(n_rounds,)``; logged action in ``[0, n_actions)``.
    :param reward: float64, shape ``(n_rounds,)``; observed reward, finite.
    :param pscore: float64, shape ``(n_rounds,)``; logging propensity of ``action``, in ``(0, 1]``.
    :param n_actions: size of the action set.
    :param context: float32, shape ``(n_rounds, d)``, or None; the logging policy's input.
    :param position: int64, shape ``(n_rounds,)``, or None; slot in the shown list, ``>= 0``.
    :param user: int64, shape ``(n_rounds,)``, or None; user id, ``>= 0``.
    :param propensity_source: ``"known"`` if ``pscore`` was logged by the policy itself,
        ``"estimated"`` if it was fitted afterwards; default ``"known"``.
    """

    action: np.ndarray
    reward: np.ndarray
    pscore: np.ndarray
    n_actions: int
    context: np.ndarray | None = None
    position: np.ndarray | None = None
    user: np.ndarray | None = None
    propensity_source: str = "known"

    _columns: ClassVar[tuple[str, ...]] = ("action", "reward", "pscore", "position", "user")

    def __post_init__(self) -> None:
        if isinstance(self.n_actions, bool) or not isinstance(self.n_actions, (int, np.integer)) or self.n_actions < 1:
            raise SeqrecError(f"n_actions must be a positive int, got {self.n_actions!r}")
        self.n_actions = int(self.n_actions)
        if self.propensity_source not in PROPENSITY_SOURCES:
            raise SeqrecError(f"propensity_source must be one of {PROPENSITY_SOURCES}, got {self.propensity_source!r}")

        self.action = _as_int_array(self.action, "action")
        n = self.action.shape[0]
        self.reward = _as_float_array(self.reward, "reward", np.float64)
        self.pscore = _as_float_array(self.pscore, "pscore", np.float64)
        if self.position is not None:
            self.position = _as_int_array(self.position, "position")
        if self.user is not None:
            self.user = _as_int_array(self.user, "user")
        if self.context is not None:
            ctx = np.asarray(self.context)
            if ctx.ndim != 2:
                raise SeqrecError(f"context must have shape (n_rounds, d), got {ctx.shape}")
            self.context = _as_float_array(ctx, "context", np.float32, ndim=2)

        for name in ("reward", "pscore", "position", "user", "context"):
            arr = getattr(self, name)
            if arr is not None and arr.shape[0] != n:
                raise SeqrecError(f"{name} has {arr.shape[0]} rounds but action has {n}; lengths must match")

        problem = _range_problem(self)
        if problem is not None:
            column, row, reason = problem
            where = f"first bad row {row}" + ("" if column == "context" else f" is {_fmt(getattr(self, column)[row])}")
            raise SeqrecError(f"{column} {reason}; {where}")

    @property
    def n_rounds(self) -> int:
        """Number of logged rounds."""
        return int(self.action.shape[0])

    @property
    def context_dim(self) -> int:
        """Number of context features ``d`` (0 without a context)."""
        return 0 if self.context is None else int(self.context.shape[1])

    def __len__(self) -> int:
        return self.n_rounds

    def __repr__(self) -> str:
        return (
            f"LoggedFeedback(n_rounds={self.n_rounds}, n_actions={self.n_actions}, context_dim={self.context_dim}, "
            f"position={self.position is not None}, user={self.user is not None}, "
            f"propensity_source={self.propensity_source!r})"
        )

    # --- Parquet ---------------------------------------------------------------------------

    def to_table(self) -> pa.Table:
        """The Arrow table written by :meth:`to_parquet`, schema metadata included."""
        columns: dict[str, pa.Array] = {
            "action": pa.array(self.action, pa.int64()),
            "reward": pa.array(self.reward, pa.float64()),
            "pscore": pa.array(self.pscore, pa.float64()),
        }
        if self.position is not None:
            columns["position"] = pa.array(self.position, pa.int64())
        if self.user is not None:
            columns["user"] = pa.array(self.user, pa.int64())
        if self.context is not None:
            for j in range(self.context.shape[1]):
                columns[f"ctx_{j}"] = pa.array(self.context[:, j], pa.float32())
        table = pa.table(columns)
        return table.replace_schema_metadata(
            {
                _META_N_ACTIONS: str(self.n_actions),
                _META_PROPENSITY_SOURCE: self.propensity_source,
                _META_FORMAT_VERSION: str(FORMAT_VERSION),
            }
        )

    def to_parquet(self, path: str | os.PathLike[str]) -> Path:
        """Write the rounds to a Parquet file, atomically.

        The table goes to a temporary file in the destination folder, which then replaces
        ``path`` with ``os.replace``: readers see the old file or the new one, never half of
        one. Missing parent folders are created.

        :param path: destination file.
        :returns: ``path`` as a :class:`~pathlib.Path`.
        """
        path = Path(path)
        table = self.to_table()
        with atomic_write(path, "wb") as fh:
            pq.write_table(table, fh)
        return path

    @classmethod
    def from_parquet(
        cls,
        path: str | os.PathLike[str],
        *,
        n_actions: int | None = None,
        propensity_source: str | None = None,
    ) -> LoggedFeedback:
        """Read and validate a file in the format of the module docstring.

        :param path: the Parquet file.
        :param n_actions: size of the action set, for a file without ``seqrec.n_actions``
            metadata; if the file has it, the two must agree.
        :param propensity_source: ``"known"`` or ``"estimated"``, for a file without
            ``seqrec.propensity_source`` metadata; if the file has it, the two must agree.
        :raises DataFormatError: one line naming the file and the problem: unreadable or
            corrupt file, missing column, non-numeric column, null or non-finite value,
            ``pscore`` outside ``(0, 1]`` or ``action`` outside ``[0, n_actions)`` (first bad
            row given), missing or contradictory metadata.
        """
        path = Path(path)
        if not path.is_file():
            raise DataFormatError(path, "file not found" if not path.exists() else "not a file")
        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as err:
            raise DataFormatError(path, f"cannot read as Parquet ({_one_line(err)})") from err

        names = table.column_names
        for required in ("action", "reward", "pscore"):
            if required not in names:
                raise DataFormatError(path, f"missing required column {required!r} (needs action, reward, pscore)")

        raw_metadata = table.schema.metadata or {}
        metadata = {k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in raw_metadata.items()}
        version = metadata.get(_META_FORMAT_VERSION)
        if version is not None and version != str(FORMAT_VERSION):
            raise DataFormatError(
                path, f"format version {version!r} is not supported (this seqrec reads version {FORMAT_VERSION})"
            )
        n_actions = _metadata_n_actions(path, metadata.get(_META_N_ACTIONS), n_actions)
        propensity_source = _metadata_propensity_source(path, metadata.get(_META_PROPENSITY_SOURCE), propensity_source)

        arrays: dict[str, np.ndarray | None] = {}
        for name in ("action", "position", "user"):
            arrays[name] = _read_int_column(path, table, name) if name in names else None
        for name in ("reward", "pscore"):
            arrays[name] = _read_float_column(path, table, name, np.float64)

        ctx_index = {int(m.group(1)): name for name in names if (m := _CTX_RE.match(name))}
        context = None
        if ctx_index:
            d = max(ctx_index) + 1
            missing = [f"ctx_{j}" for j in range(d) if j not in ctx_index]
            if missing:
                raise DataFormatError(path, f"context columns must be ctx_0..ctx_{d - 1}; missing {missing[0]}")
            context = np.empty((table.num_rows, d), dtype=np.float32)
            for j in range(d):
                context[:, j] = _read_float_column(path, table, ctx_index[j], np.float32)

        fields = dict(
            action=arrays["action"],
            reward=arrays["reward"],
            pscore=arrays["pscore"],
            position=arrays["position"],
            user=arrays["user"],
            context=context,
            n_actions=n_actions,
            propensity_source=propensity_source,
        )
        problem = _range_problem(SimpleNamespace(**fields))
        if problem is not None:
            column, row, reason = problem
            where = f"first bad row {row}" + ("" if column == "context" else f" is {_fmt(fields[column][row])}")
            raise DataFormatError(path, f"{reason}; {where}", column=column)
        try:
            feedback = cls(**fields)
        except SeqrecError as err:  # not expected after the checks above; keep it one line and file-named
            raise DataFormatError(path, str(err)) from err
        return feedback


# --- helpers -------------------------------------------------------------------------------


def _fmt(value: object) -> str:
    """A value for an error message: ``12``, ``1.5``, ``[nan, 0.0]`` (no ``np.float64(...)``)."""
    if isinstance(value, np.ndarray):
        return str(value.tolist())
    if isinstance(value, np.generic):
        return repr(value.item())
    return repr(value)


def _range_problem(fb: LoggedFeedback | SimpleNamespace) -> tuple[str, int, str] | None:
    """(column, first bad row, reason) for the first out-of-range value, or None."""
    if fb.action.size:
        bad = (fb.action < 0) | (fb.action >= fb.n_actions)
        if bad.any():
            return "action", _first_bad(bad), f"must be in [0, {fb.n_actions}) (n_actions)"
    bad = ~((fb.pscore > 0) & (fb.pscore <= 1))
    if bad.any():
        return "pscore", _first_bad(bad), "must be in (0, 1]"
    bad = ~np.isfinite(fb.reward)
    if bad.any():
        return "reward", _first_bad(bad), "must be finite"
    for name in ("position", "user"):
        arr = getattr(fb, name)
        if arr is not None and (arr < 0).any():
            return name, _first_bad(arr < 0), "must be >= 0"
    if fb.context is not None:
        bad = ~np.isfinite(fb.context).all(axis=1)
        if bad.any():
            return "context", _first_bad(bad), "must be finite"
    return None


def _as_int_array(value: object, name: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 1:
        raise SeqrecError(f"{name} must have shape (n_rounds,), got {arr.shape}")
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise SeqrecError(f"{name} must hold integers, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        bad = ~(np.isfinite(arr) & (arr == np.round(arr)))
        if bad.any():
            row = _first_bad(bad)
            raise SeqrecError(f"{name} must hold integers; first bad row {row} is {_fmt(arr[row])}")
    return arr.astype(np.int64, copy=False)


def _as_float_array(value: object, name: str, dtype: type[np.floating], ndim: int = 1) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != ndim:
        shape = "(n_rounds,)" if ndim == 1 else "(n_rounds, d)"
        raise SeqrecError(f"{name} must have shape {shape}, got {arr.shape}")
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise SeqrecError(f"{name} must be numeric, got dtype {arr.dtype}")
    return arr.astype(dtype, copy=False)


def _column(path: Path, table: pa.Table, name: str, kind: str) -> pa.ChunkedArray:
    col = table.column(name)
    t = col.type
    numeric = pa.types.is_integer(t) or pa.types.is_floating(t)
    if not numeric:
        raise DataFormatError(path, f"must be numeric ({kind}), got Arrow type {t}", column=name)
    if col.null_count:
        row = _first_bad(col.is_null().to_numpy(zero_copy_only=False))
        raise DataFormatError(path, f"null value; first null at row {row}", column=name)
    return col


def _read_int_column(path: Path, table: pa.Table, name: str) -> np.ndarray:
    col = _column(path, table, name, "integer")
    arr = col.to_numpy()
    if np.issubdtype(arr.dtype, np.floating):
        bad = ~(np.isfinite(arr) & (arr == np.round(arr)))
        if bad.any():
            row = _first_bad(bad)
            raise DataFormatError(path, f"must hold integers; first bad row {row} is {_fmt(arr[row])}", column=name)
    return arr.astype(np.int64, copy=False)


def _read_float_column(path: Path, table: pa.Table, name: str, dtype: type[np.floating]) -> np.ndarray:
    arr = _column(path, table, name, "float").to_numpy()
    if np.issubdtype(arr.dtype, np.floating):
        bad = ~np.isfinite(arr)
        if bad.any():
            row = _first_bad(bad)
            raise DataFormatError(path, f"must be finite; first bad row {row} is {_fmt(arr[row])}", column=name)
    return arr.astype(dtype, copy=False)


def _metadata_n_actions(path: Path, stored: str | None, given: int | None) -> int:
    if stored is None:
        if given is None:
            raise DataFormatError(path, f"no {_META_N_ACTIONS!r} in the schema metadata; pass n_actions=")
        value = given
    else:
        try:
            value = int(stored)
        except ValueError:
            raise DataFormatError(path, f"metadata {_META_N_ACTIONS!r} is {stored!r}, not an integer") from None
        if given is not None and int(given) != value:
            raise DataFormatError(path, f"n_actions={given} contradicts the file's {_META_N_ACTIONS}={value}")
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise DataFormatError(path, f"n_actions must be a positive integer, got {value!r}")
    return int(value)


def _metadata_propensity_source(path: Path, stored: str | None, given: str | None) -> str:
    if stored is None:
        value = given
        if value is None:
            raise DataFormatError(
                path, f"no {_META_PROPENSITY_SOURCE!r} in the schema metadata; pass propensity_source="
            )
    else:
        value = stored
        if given is not None and given != stored:
            raise DataFormatError(
                path, f"propensity_source={given!r} contradicts the file's {_META_PROPENSITY_SOURCE}={stored!r}"
            )
    if value not in PROPENSITY_SOURCES:
        raise DataFormatError(path, f"propensity_source must be one of {PROPENSITY_SOURCES}, got {value!r}")
    return value
