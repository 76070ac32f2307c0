"""Preprocessing: value threshold, de-duplication, k-core filtering, chronological order.

Each step is vectorised pandas/numpy and counts what it drops in a :class:`PrepReport`,
so nothing disappears silently.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from seqrec.infra.errors import SeqrecError
from seqrec.data.table import InteractionTable

Dedup = Literal["none", "exact", "first", "last"]


@dataclass(frozen=True)
class PrepConfig:
    """Options of :func:`preprocess` (all explicit, all recorded in the cache key)."""

    min_value: float | None = None
    """Keep only events with ``value >= min_value`` (e.g. 4 for "rating ≥ 4"); None keeps all."""
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


@dataclass
class PrepReport:
    """What preprocessing read, dropped (by reason) and kept."""

    rows_read: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    core_iterations: int = 0
    users_kept: int = 0
    items_kept: int = 0
    rows_kept: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def _kcore(events: pd.DataFrame, cfg: PrepConfig, report: PrepReport) -> pd.DataFrame:
    """Drop users and items below their minimum counts until none is left to drop."""
    n_users_dropped = n_items_dropped = 0
    for it in range(1, cfg.max_core_iterations + 1):
        ucount = events.groupby("user")["item"].transform("size")
        icount = events.groupby("item")["user"].transform("size")
        keep = (ucount >= cfg.min_user_interactions) & (icount >= cfg.min_item_interactions)
        report.core_iterations = it
        if keep.all():
            break
        n_users_dropped += int((ucount < cfg.min_user_interactions).sum())
        n_items_dropped += int(((icount < cfg.min_item_interactions) & (ucount >= cfg.min_user_interactions)).sum())
        events = events[keep.to_numpy()]
    else:
        raise SeqrecError(f"k-core filtering did not converge in {cfg.max_core_iterations} iterations")
    report.dropped["k-core: rows of users below min_user_interactions"] = n_users_dropped
    report.dropped["k-core: rows of items below min_item_interactions"] = n_items_dropped
    return events


def preprocess(table: InteractionTable, cfg: PrepConfig) -> tuple[InteractionTable, PrepReport]:
    """Filter and order ``table``; returns a new table (ids re-indexed contiguously) and the report.

    Events end up sorted by user, then time, ties kept in source order (a stable sort).
    """
    report = PrepReport(rows_read=table.n_interactions)
    events = table.events.assign(_row=np.arange(table.n_interactions))
    if cfg.min_value is not None:
        keep = events["value"].to_numpy() >= cfg.min_value
        report.dropped[f"value < {cfg.min_value:g}"] = int((~keep).sum())
        events = events[keep]
    if cfg.dedup != "none":
        keys = ["user", "item", "ts", "behaviour"] if cfg.dedup == "exact" else ["user", "item"]
        ordered = events.sort_values(["user", "ts", "_row"], kind="stable")
        dup = ordered.duplicated(keys, keep="last" if cfg.dedup == "last" else "first")
        report.dropped[f"duplicates ({cfg.dedup})"] = int(dup.sum())
        events = ordered[~dup.to_numpy()]
    events = _kcore(events, cfg, report)
    if events.empty:
        raise SeqrecError(f"{table.source}: no interactions left after preprocessing ({report.dropped})")
    events = events.sort_values(["user", "ts", "_row"], kind="stable")
    return _reindex(table, events.drop(columns="_row")), _finish(report, events)


def _finish(report: PrepReport, events: pd.DataFrame) -> PrepReport:
    report.users_kept = int(events["user"].nunique())
    report.items_kept = int(events["item"].nunique())
    report.rows_kept = int(len(events))
    return report


def _reindex(table: InteractionTable, events: pd.DataFrame) -> InteractionTable:
    """Renumber users and items contiguously after rows were dropped, keeping the id maps."""
    users, user_keep = pd.factorize(events["user"], sort=True)
    items, item_keep = pd.factorize(events["item"], sort=True)
    events = events.assign(user=users.astype(np.int64), item=items.astype(np.int64)).reset_index(drop=True)
    user_keep, item_keep = np.asarray(user_keep), np.asarray(item_keep)
    feats = table.item_features[item_keep] if table.item_features is not None else None
    ufeats = table.user_features.iloc[user_keep].reset_index(drop=True) if table.user_features is not None else None
    return InteractionTable(
        events, table.user_ids[user_keep], table.item_ids[item_keep], table.behaviour_names,
        feats, table.item_feature_names, ufeats, table.source,
    )  # fmt: skip
