"""Per-user sequences in CSR form, chronological splits and padded histories.

A :class:`SequenceData` holds the preprocessed events sorted by user then time as flat
arrays plus ``user_ptr`` (user ``u``'s events are ``[user_ptr[u], user_ptr[u+1])``), and a
per-event split label. The history of the event at flat position ``p`` is every earlier
event of the same user, ``[user_ptr[u], p)``: a train, validation or test *target* is an
event, and its input is always its full past, whichever split that past falls in.

Padded histories are **left-padded with** :data:`PAD` (= -1) so the most recent item is
always in the last column; they are built with one gather, no loop per user.

On disk (:meth:`SequenceData.save`) a prepared dataset is three uncompressed Arrow IPC files —
``events.arrow`` (one row per event), ``users.arrow`` (raw id, end of the user's events),
``items.arrow`` (raw id, side features) — and ``sequences.json``. :meth:`SequenceData.load`
memory-maps them: the per-event arrays are read-only views of the file, so a process that
loads a large dataset (an env on a big bundle) holds only the pages it touches, and the files
open as they are in pyarrow, Polars or DuckDB.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from seqrec.infra.errors import SeqrecError
from seqrec.data.table import InteractionTable

PAD: int = -1
TRAIN, VALID, TEST = 0, 1, 2
SPLIT_NAMES = {"train": TRAIN, "valid": VALID, "test": TEST}
SplitMode = Literal["leave-last-out", "time"]


@dataclass(frozen=True)
class SplitConfig:
    """How events are split into train / validation / test targets."""

    mode: SplitMode = "leave-last-out"
    """``leave-last-out``: per user, last event = test, second last = valid, rest = train.
    ``time``: one global time split at the quantiles below."""
    valid_fraction: float = 0.1
    """``time`` mode: share of events (by time) in validation."""
    test_fraction: float = 0.1
    """``time`` mode: share of events (by time) in test (the latest ones)."""

    def __post_init__(self) -> None:
        if self.mode not in ("leave-last-out", "time"):
            raise SeqrecError(f"split mode must be leave-last-out or time, not {self.mode!r}")
        if not (0 <= self.valid_fraction < 1 and 0 < self.test_fraction < 1 and self.valid_fraction + self.test_fraction < 1):
            raise SeqrecError("split fractions must be in [0, 1) and sum below 1")


def split_labels(user_ptr: np.ndarray, ts: np.ndarray, cfg: SplitConfig) -> np.ndarray:
    """Split label (TRAIN/VALID/TEST) of every event, shape (n_events,) int8."""
    labels = np.zeros(len(ts), np.int8)
    if cfg.mode == "leave-last-out":
        ends = user_ptr[1:]
        labels[ends - 1] = TEST
        labels[ends - 2] = VALID
        return labels
    t_valid, t_test = np.quantile(ts, [1 - cfg.valid_fraction - cfg.test_fraction, 1 - cfg.test_fraction])
    labels[ts >= t_valid] = VALID
    labels[ts >= t_test] = TEST
    return labels


@dataclass
class SequenceData:
    """Preprocessed events as flat per-user sequences (see the module docstring).

    Arrays of shape (n_events,): ``users``, ``items`` (int64), ``ts`` (int64), ``behaviours``
    (int8), ``values`` (float32), ``split`` (int8), optional ``pscore`` (float32) and ``session``.
    ``user_ptr`` has shape (n_users + 1,).
    """

    users: np.ndarray
    items: np.ndarray
    ts: np.ndarray
    behaviours: np.ndarray
    values: np.ndarray
    split: np.ndarray
    user_ptr: np.ndarray
    n_items: int
    behaviour_names: list[str]
    user_ids: np.ndarray
    item_ids: np.ndarray
    item_features: np.ndarray | None = None
    item_feature_names: list[str] = field(default_factory=list)
    pscore: np.ndarray | None = None
    session: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_table(cls, table: InteractionTable, split: SplitConfig = SplitConfig()) -> "SequenceData":
        """Build from a preprocessed table (sorted by user, then time)."""
        ev = table.columns
        users = ev["user"].astype(np.int64, copy=False)
        if len(users) and np.any(np.diff(users) < 0):
            raise SeqrecError("events must be sorted by user (run preprocess first)")
        user_ptr = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=table.n_users))]).astype(np.int64)
        lengths = np.diff(user_ptr)
        if split.mode == "leave-last-out" and lengths.min(initial=3) < 3:
            raise SeqrecError(f"{int((lengths < 3).sum())} users have fewer than 3 events; leave-last-out needs 3 (raise min_user_interactions)")
        ts = ev["ts"].astype(np.int64, copy=False)
        return cls(
            users=users, items=ev["item"].astype(np.int64, copy=False), ts=ts, behaviours=ev["behaviour"].astype(np.int8, copy=False),
            values=ev["value"].astype(np.float32, copy=False), split=split_labels(user_ptr, ts, split), user_ptr=user_ptr,
            n_items=table.n_items, behaviour_names=list(table.behaviour_names), user_ids=table.user_ids,
            item_ids=table.item_ids, item_features=table.item_features, item_feature_names=list(table.item_feature_names),
            pscore=ev["pscore"].astype(np.float32, copy=False) if "pscore" in ev else None,
            session=ev["session"].astype(np.int64, copy=False) if "session" in ev else None,
            meta={"source": table.source, "split": split.__dict__},
        )  # fmt: skip

    # ------------------------------------------------------------------ basic facts
    @property
    def n_users(self) -> int:
        return int(len(self.user_ptr) - 1)

    @property
    def n_events(self) -> int:
        return int(len(self.items))

    @property
    def lengths(self) -> np.ndarray:
        """Events per user, shape (n_users,)."""
        return np.diff(self.user_ptr)

    def positions(self, split: str) -> np.ndarray:
        """Flat positions of the target events of ``split`` that have at least one earlier event."""
        if split not in SPLIT_NAMES:
            raise SeqrecError(f"unknown split {split!r}; expected train, valid or test")
        first = np.zeros(self.n_events, bool)
        first[self.user_ptr[:-1]] = True
        return np.flatnonzero((self.split == SPLIT_NAMES[split]) & ~first)

    def item_popularity(self, splits: tuple[str, ...] = ("train",)) -> np.ndarray:
        """Event count per item over the given splits, shape (n_items,)."""
        mask = np.isin(self.split, [SPLIT_NAMES[s] for s in splits])
        return np.bincount(self.items[mask], minlength=self.n_items)

    # ------------------------------------------------------------------ histories
    def histories(self, positions: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """The last ``max_len`` events before each target position, left-padded with PAD.

        :param positions: flat event positions, shape (n,).
        :return: ``(items, behaviours)``, each shape (n, max_len); PAD (-1) where no event.
        """
        positions = np.asarray(positions, np.int64)
        start = self.user_ptr[self.users[positions]]
        idx = positions[:, None] - max_len + np.arange(max_len)[None, :]
        valid = idx >= start[:, None]
        safe = np.where(valid, idx, 0)
        items = np.where(valid, self.items[safe], PAD)
        behaviours = np.where(valid, self.behaviours[safe], PAD).astype(np.int8)
        return items, behaviours

    def user_histories(self, users: np.ndarray, max_len: int, upto: str = "test") -> tuple[np.ndarray, np.ndarray]:
        """Each user's last ``max_len`` events up to and including split ``upto``.

        ``upto="valid"`` ends before the test event (the state a simulated episode starts from
        when the test event is held out); ``"test"`` uses the whole log.
        """
        users = np.asarray(users, np.int64)
        end = self.user_ptr[users + 1]
        if upto != "test":
            allowed = self.split <= SPLIT_NAMES[upto]
            # count of allowed events per user (leave-last-out keeps them at the front)
            counts = np.add.reduceat(allowed.astype(np.int64), self.user_ptr[:-1])
            end = self.user_ptr[users] + counts[users]
        return self.histories(end, max_len)

    # ------------------------------------------------------------------ storage
    _ARRAYS = ("users", "items", "ts", "behaviours", "values", "split", "user_ptr")
    _EVENT_ARRAYS = ("users", "items", "ts", "behaviours", "values", "split", "pscore", "session")
    FORMAT = 2
    """On-disk format: 2 = Arrow IPC files (memory-mapped on load); 1 = ``sequences.npz`` (still read)."""

    def save(self, folder: Path) -> None:
        """Write the Arrow files and ``sequences.json`` (last) into ``folder`` (caller makes it atomic)."""
        folder = Path(folder)
        events = {k: getattr(self, k) for k in self._EVENT_ARRAYS if getattr(self, k) is not None}
        _write_arrow(folder / "events.arrow", {k: pa.array(v) for k, v in events.items()})
        _write_arrow(folder / "users.arrow", {"id": _id_array(self.user_ids), "end": pa.array(np.asarray(self.user_ptr[1:], np.int64))})
        items = {"id": _id_array(self.item_ids)}
        if self.item_features is not None:
            feats = np.ascontiguousarray(self.item_features, np.float32)
            items["features"] = pa.FixedSizeListArray.from_arrays(pa.array(feats.reshape(-1)), feats.shape[1])
        _write_arrow(folder / "items.arrow", items)
        meta = dict(self.meta, n_items=self.n_items, behaviour_names=self.behaviour_names, sequences_format=self.FORMAT,
                    item_feature_names=self.item_feature_names, id_dtypes=[self.user_ids.dtype.kind, self.item_ids.dtype.kind])  # fmt: skip
        (folder / "sequences.json").write_text(json.dumps(meta, indent=2, default=str))

    @classmethod
    def load(cls, folder: Path) -> "SequenceData":
        """Memory-map what :meth:`save` wrote (or read a format-1 ``sequences.npz``); one-line error when missing or damaged."""
        folder = Path(folder)
        try:
            meta = json.loads((folder / "sequences.json").read_text())
            if not (folder / "events.arrow").exists() and (folder / "sequences.npz").exists():
                return cls._load_npz(folder, meta)
            events = _read_arrow(folder / "events.arrow")
            users, items = _read_arrow(folder / "users.arrow"), _read_arrow(folder / "items.arrow")
            arrays = {k: _view(v) for k, v in events.items()}
            end = _view(users["end"])
            arrays["user_ptr"] = np.concatenate([np.zeros(1, np.int64), end])
            feats = None
            if "features" in items:
                col = items["features"]
                feats = _view(col.flatten()).reshape(len(col), col.type.list_size)
            kinds = meta.pop("id_dtypes", ["U", "U"])
            user_ids, item_ids = (_arrow_ids(a["id"], kind) for a, kind in ((users, kinds[0]), (items, kinds[1])))
            meta.pop("sequences_format", None)
            return cls(
                **{k: arrays[k] for k in cls._ARRAYS}, n_items=int(meta.pop("n_items")),
                behaviour_names=meta.pop("behaviour_names"), user_ids=user_ids, item_ids=item_ids,
                item_features=feats, item_feature_names=meta.pop("item_feature_names"),
                pscore=arrays.get("pscore"), session=arrays.get("session"), meta=meta,
            )  # fmt: skip
        except (OSError, ValueError, KeyError, IndexError, TypeError, pa.ArrowException) as err:
            raise SeqrecError(f"{folder}: prepared dataset is missing or damaged ({type(err).__name__}: {err})") from None

    @classmethod
    def _load_npz(cls, folder: Path, meta: dict) -> "SequenceData":
        """Format 1 (bundles built before the Arrow files): everything in ``sequences.npz``, read into memory."""
        with np.load(folder / "sequences.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        kinds = meta.pop("id_dtypes", ["U", "U"])
        user_ids, item_ids = (_restore_ids(arrays.pop(k), kind) for k, kind in zip(("user_ids", "item_ids"), kinds))
        return cls(
            **{k: arrays[k] for k in cls._ARRAYS}, n_items=int(meta.pop("n_items")),
            behaviour_names=meta.pop("behaviour_names"), user_ids=user_ids, item_ids=item_ids,
            item_features=arrays.get("item_features"), item_feature_names=meta.pop("item_feature_names"),
            pscore=arrays.get("pscore"), session=arrays.get("session"), meta=meta,
        )  # fmt: skip


def _write_arrow(path: Path, columns: dict[str, pa.Array]) -> None:
    """One uncompressed Arrow IPC file holding ``columns`` as a single record batch (one chunk each, so loads map them zero-copy)."""
    batch = pa.record_batch(list(columns.values()), names=list(columns))
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, batch.schema) as writer:
        writer.write_batch(batch)


def _read_arrow(path: Path) -> dict[str, pa.Array]:
    """The columns of an Arrow IPC file, memory-mapped (nothing is read until touched)."""
    reader = pa.ipc.open_file(pa.memory_map(str(path), "r"))
    if reader.num_record_batches != 1:
        raise ValueError(f"{path.name} holds {reader.num_record_batches} record batches, expected 1")
    batch = reader.get_batch(0)
    return {name: batch.column(i) for i, name in enumerate(batch.schema.names)}


def _view(array: pa.Array) -> np.ndarray:
    """A read-only numpy view of a primitive Arrow array (no copy: it shares the mapped file)."""
    return array.to_numpy(zero_copy_only=True)


def _id_array(ids: np.ndarray) -> pa.Array:
    """Raw ids as Arrow: int64 when numeric, else text."""
    return pa.array(ids.astype(np.int64)) if ids.dtype.kind in "iu" else pa.array(ids.astype(str), pa.large_string())


def _arrow_ids(array: pa.Array, kind: str) -> np.ndarray:
    return _view(array) if kind in "iu" else array.to_numpy(zero_copy_only=False).astype(object)


def _restore_ids(ids: np.ndarray, kind: str) -> np.ndarray:
    return ids.astype(np.int64) if kind in "iu" else ids.astype(object)


def describe(users: np.ndarray, items: np.ndarray, ts: np.ndarray, behaviours: np.ndarray,
             n_users: int, n_items: int, behaviour_names: list[str]) -> dict:
    """Summary numbers of a log (``seqrec data info``): counts, behaviours, time span, lengths."""
    lengths = np.bincount(users, minlength=n_users)
    counts = np.bincount(behaviours.astype(np.int64), minlength=len(behaviour_names))
    utc = lambda t: str(pd.to_datetime(int(t), unit="s"))  # noqa: E731
    return {
        "n_users": int(n_users),
        "n_items": int(n_items),
        "n_interactions": int(len(items)),
        "behaviours": {name: int(c) for name, c in zip(behaviour_names, counts)},
        "time_span": {"first": int(ts.min()), "last": int(ts.max()), "first_utc": utc(ts.min()), "last_utc": utc(ts.max()),
                      "days": round(float(ts.max() - ts.min()) / 86400, 2)},  # fmt: skip
        "sequence_length": {"mean": round(float(lengths.mean()), 2), "median": float(np.median(lengths)),
                            "min": int(lengths.min()), "max": int(lengths.max()), "p90": float(np.percentile(lengths, 90))},  # fmt: skip
        "density": round(float(len(items) / (n_users * n_items)), 6),
    }
