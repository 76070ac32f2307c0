"""Preprocessing: positives and real negatives, value threshold, de-duplication, k-core filtering, chronological order.

Each step is vectorised numpy over the table's columns (bincounts for the k-core, one stable
``lexsort`` for the order), never a pandas frame of the log, and counts what it drops in a
:class:`PrepReport`, so nothing disappears silently. Rows are tracked by a keep-mask over the
source order, so ties in time keep their source order exactly as a stable sort would.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import numpy as np

from seqrec.infra.errors import SeqrecError
from seqrec.data.positive import NEGATIVE, PositiveRule, parse_positive
from seqrec.data.table import InteractionTable, behaviour_vocabulary

Dedup = Literal["none", "exact", "first", "last"]


@dataclass(frozen=True)
class PrepConfig:
    """Options of :func:`preprocess` (all explicit, all recorded in the cache key)."""

    min_value: float | None = None
    """Keep only events with ``value >= min_value`` (e.g. 4 for "rating ≥ 4"); None keeps all."""
    positive: str | None = None
    """A :mod:`~seqrec.data.positive` rule (``value>=4``, ``behaviour==click``, …): events that
    fail it are kept as real negatives, renamed ``"negative"``; None: every event keeps its
    behaviour. Applied before ``min_value``, so both can be given; negatives are events like
    any other for the k-core and the splits."""
    dedup: Dedup = "none"
    """``exact``: drop repeated (user, item, ts, behaviour) rows; ``first``/``last``: keep one
    event per (user, item) pair, the earliest/latest."""
    min_user_interactions: int = 3
    """k-core on users (3 is the least that leave-last-out needs: train, valid, test)."""
    min_item_interactions: int = 1
    """k-core on items; both cores are iterated to a fixed point."""
    max_core_iterations: int = 100
    """Safety bound on the fixed-point iteration."""

    def __post_init__(self) -> None:
        if self.dedup not in ("none", "exact", "first", "last"):
            raise SeqrecError(f"dedup must be none, exact, first or last, not {self.dedup!r}")
        if self.min_user_interactions < 0 or self.min_item_interactions < 0:
            raise SeqrecError("min_user_interactions and min_item_interactions must be >= 0")
        if self.positive is not None:
            parse_positive(self.positive)


@dataclass
class PrepReport:
    """What preprocessing read, dropped (by reason) and kept."""

    rows_read: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    core_iterations: int = 0
    users_kept: int = 0
    items_kept: int = 0
    rows_kept: int = 0
    positive: dict | None = None
    """With a ``positive`` rule: ``{"rule": str, "positive": n, "negative": n}`` over the rows kept."""
    notes: list[str] = field(default_factory=list)
    """What the reader assumed that is not an error (e.g. no time column: file order)."""

    def to_dict(self) -> dict:
        return asdict(self)


def _kcore(users: np.ndarray, items: np.ndarray, alive: np.ndarray, cfg: PrepConfig, report: PrepReport) -> np.ndarray:
    """Drop users and items below their minimum counts until none is left to drop.

    :param users, items: codes of every source row, shape (n,).
    :param alive: rows still kept, shape (n,) bool (updated copy returned).
    """
    n_users_dropped = n_items_dropped = 0
    n_users, n_items = int(users.max(initial=-1)) + 1, int(items.max(initial=-1)) + 1
    alive = alive.copy()
    for it in range(1, cfg.max_core_iterations + 1):
        report.core_iterations = it
        u = users if alive.all() else users[alive]
        i = items if u is users else items[alive]
        user_ok = (np.bincount(u, minlength=n_users) >= cfg.min_user_interactions)[u]
        item_ok = (np.bincount(i, minlength=n_items) >= cfg.min_item_interactions)[i] if cfg.min_item_interactions > 1 else None
        keep = user_ok if item_ok is None else user_ok & item_ok
        if keep.all():
            break
        n_users_dropped += int((~user_ok).sum())
        n_items_dropped += 0 if item_ok is None else int((~item_ok & user_ok).sum())
        alive[np.flatnonzero(alive)[~keep]] = False
    else:
        raise SeqrecError(f"k-core filtering did not converge in {cfg.max_core_iterations} iterations")
    report.dropped["k-core: rows of users below min_user_interactions"] = n_users_dropped
    report.dropped["k-core: rows of items below min_item_interactions"] = n_items_dropped
    return alive


def chronological_order(users: np.ndarray, ts: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Source rows sorted by user, then time, ties in source order, shape (len(rows),) int64.

    :param rows: ascending source row numbers to order (None: all rows).

    Sorting packed int64 keys with ``np.sort`` (SIMD, no indirection) is ~15x faster than
    ``np.lexsort`` on 20M events, so: input already in (user, time) order is returned as is;
    input in time order (most event logs) needs one sort of ``user << 32 | row``; other input
    is first put in time order by a sort of ``time << 32 | row``; ``lexsort`` is the fallback
    for times or sizes that do not fit the packing.
    """
    u = users if rows is None else users[rows]
    t = ts if rows is None else ts[rows]
    n = len(u)
    if n < 2 or bool(np.all((u[1:] > u[:-1]) | ((u[1:] == u[:-1]) & (t[1:] >= t[:-1])))):
        return np.arange(n, dtype=np.int64) if rows is None else rows.astype(np.int64, copy=False)
    if n >= 1 << 32 or int(u.max()) >= 1 << 31 or int(t.max()) - int(t.min()) >= 1 << 31:
        order = np.lexsort((t, u))  # lexsort is stable: equal (user, ts) keep their row order
    else:
        low = np.int64((1 << 32) - 1)
        rank = np.arange(n, dtype=np.int64)  # each row's position in time order
        by_time = None
        if not bool(np.all(t[1:] >= t[:-1])):
            by_time = np.sort(((t - t.min()).astype(np.int64) << 32) | rank) & low
            rank[by_time] = np.arange(n, dtype=np.int64)
        order = np.sort((u.astype(np.int64) << 32) | rank) & low  # positions in time order, by (user, time)
        if by_time is not None:
            order = by_time[order]
    return order if rows is None else rows[order]


def _dedup(cols: dict[str, np.ndarray], alive: np.ndarray, cfg: PrepConfig, report: PrepReport) -> np.ndarray:
    """Drop repeated events; which one of a group survives follows the (user, time, row) order."""
    rows = np.flatnonzero(alive)
    order = chronological_order(cols["user"], cols["ts"], rows)  # source rows in (user, ts, row) order
    rank = np.empty(len(cols["user"]), np.int64)
    rank[order] = np.arange(len(order))
    names = ["user", "item", "ts", "behaviour"] if cfg.dedup == "exact" else ["user", "item"]
    keys = [cols[k][rows] for k in names]
    group = np.lexsort((rank[rows], *keys[::-1]))  # by the keys, then chronologically
    same = np.ones(max(len(rows) - 1, 0), bool)
    for key in keys:
        k = key[group]
        same &= k[1:] == k[:-1]
    drop = group[:-1][same] if cfg.dedup == "last" else group[1:][same]
    report.dropped[f"duplicates ({cfg.dedup})"] = int(len(drop))
    alive = alive.copy()
    alive[rows[drop]] = False
    return alive


def preprocess(table: InteractionTable, cfg: PrepConfig) -> tuple[InteractionTable, PrepReport]:
    """Filter and order ``table``; returns a new table (ids re-indexed contiguously) and the report.

    Events end up sorted by user, then time, ties kept in source order (a stable sort).
    Memory: the input's columns plus one int64 order and the output's columns.
    """
    report = PrepReport(rows_read=table.n_interactions, notes=list(table.notes))
    passed = None
    if cfg.positive is not None:
        table, passed = relabel_negatives(table, parse_positive(cfg.positive))
    cols = table.columns
    alive = np.ones(table.n_interactions, bool)
    if cfg.min_value is not None:
        alive = cols["value"] >= cfg.min_value
        report.dropped[f"value < {cfg.min_value:g}"] = int((~alive).sum())
    if cfg.dedup != "none":
        alive = _dedup(cols, alive, cfg, report)
    alive = _kcore(cols["user"], cols["item"], alive, cfg, report)
    if not alive.any():
        raise SeqrecError(f"{table.source}: no interactions left after preprocessing ({report.dropped})")
    if passed is not None:
        n_pos = int(passed[alive].sum())
        report.positive = {"rule": str(parse_positive(cfg.positive)), "positive": n_pos, "negative": int(alive.sum()) - n_pos}
    everything = bool(alive.all())
    order = chronological_order(cols["user"], cols["ts"], None if everything else np.flatnonzero(alive))
    return _reindex(table, order, None if everything else alive, report)


def relabel_negatives(table: InteractionTable, rule: PositiveRule) -> tuple[InteractionTable, np.ndarray]:
    """A copy of ``table`` whose events failing ``rule`` have the behaviour :data:`NEGATIVE`.

    :return: the new table and the rule's mask over its rows, shape (n_events,) bool.
    Behaviour codes are renumbered in :func:`behaviour_vocabulary` order (``negative`` added
    only when some event fails).
    """
    passed = rule.mask(table)
    if passed.all():
        return table, passed
    names = behaviour_vocabulary(np.array([*table.behaviour_names, NEGATIVE], dtype=object))
    remap = np.array([names.index(n) for n in table.behaviour_names], np.int8)
    codes = np.where(passed, remap[table.columns["behaviour"]], np.int8(names.index(NEGATIVE))).astype(np.int8)
    return replace(table, columns={**table.columns, "behaviour": codes}, behaviour_names=names), passed


def _reindex(table: InteractionTable, order: np.ndarray, alive: np.ndarray | None, report: PrepReport) -> tuple[InteractionTable, PrepReport]:
    """Gather the kept rows in ``order`` and renumber users and items contiguously, keeping the id maps.

    Codes are ranks of the sorted raw ids, so dropping the absent ones keeps them sorted; the
    users come out sorted, so their column is built by ``np.repeat``, not gathered.
    """
    cols = table.columns
    user_counts = np.bincount(cols["user"] if alive is None else cols["user"][alive], minlength=table.n_users)
    user_keep = np.flatnonzero(user_counts)
    out: dict[str, np.ndarray] = {"user": np.repeat(np.arange(len(user_keep), dtype=np.int64), user_counts[user_keep])}
    items = cols["item"][order]
    item_present = np.bincount(items, minlength=table.n_items) > 0
    item_keep = np.flatnonzero(item_present)
    out["item"] = items.astype(np.int64) if len(item_keep) == table.n_items else (np.cumsum(item_present, dtype=np.int64) - 1)[items]
    del items
    for name, col in cols.items():
        if name not in out:
            out[name] = col[order]
    report.users_kept, report.items_kept, report.rows_kept = len(user_keep), len(item_keep), len(order)
    feats = table.item_features[item_keep] if table.item_features is not None else None
    ufeats = table.user_features.iloc[user_keep].reset_index(drop=True) if table.user_features is not None else None
    return InteractionTable(
        out, table.user_ids[user_keep], table.item_ids[item_keep], table.behaviour_names,
        feats, table.item_feature_names, ufeats, table.source, list(table.notes),
    ), report  # fmt: skip
