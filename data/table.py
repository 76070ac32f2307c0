"""The canonical interaction table every reader produces.

One row per logged event, with contiguous integer ids:

======== ======= ===========================================================
column   dtype   meaning
======== ======= ===========================================================
user     int64   0 … n_users-1  (raw id: ``user_ids[user]``; int32 while streaming)
item     int64   0 … n_items-1  (raw id: ``item_ids[item]``; int32 while streaming)
ts       int64   event time in seconds (logs without a time column: the row number, file order)
behaviour int8   index into ``behaviour_names`` (view, click, cart, purchase, …)
value    float32 the event's value: a rating, a funnel depth, 1.0 when absent
======== ======= ===========================================================

Optional columns ``session`` (int64) and ``pscore`` (float32 in (0, 1], the logging policy's
propensity of showing the event's item: logged by the source, or written by ``seqrec data
synth``) are carried when the source has them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

REQUIRED_COLUMNS = ("user", "item", "ts", "behaviour", "value")

NO_TIME_NOTE = "no time column: each user's events are in file order (ts = the row number, counted over all files)"
"""The report's note for a log read without a time column (how Coat and Yahoo! R3 are shared)."""

#: Known behaviour names in funnel order; others sort after them alphabetically.
BEHAVIOUR_ORDER = ("view", "pv", "impression", "click", "fav", "like", "cart", "purchase", "buy")


def behaviour_vocabulary(names: "pd.Series | np.ndarray") -> list[str]:
    """Deterministic behaviour vocabulary: known funnel stages first, then the rest sorted."""
    present = set(pd.unique(np.asarray(names, dtype=object)).tolist())
    known = [b for b in BEHAVIOUR_ORDER if b in present]
    return known + sorted(str(b) for b in present - set(known))


@dataclass
class InteractionTable:
    """A logged dataset in canonical form (see the module docstring), held as numpy columns.

    :param columns: the canonical columns by name (``REQUIRED_COLUMNS`` plus optional
        ``session``, ``pscore``), each shape (n_events,); ``user``/``item`` may be int32 codes.
    :param user_ids: raw user id of each contiguous user index, shape (n_users,).
    :param item_ids: raw item id of each contiguous item index, shape (n_items,).
    :param behaviour_names: name of each behaviour code.
    :param item_features: side features, shape (n_items, F) float32, or None.
    :param item_feature_names: the F feature names.
    :param user_features: one row per user index (any columns), or None.
    :param source: where the table was read from (for reports and errors).
    :param notes: what the reader assumed that is not an error (e.g. no time column: ``ts`` is
        the row number); preprocessing copies them into its report.

    Columns rather than a DataFrame: a streamed log of tens of millions of events costs its
    ~25 bytes per event once, never a second pandas copy; :attr:`events` builds a frame on demand.
    """

    columns: dict[str, np.ndarray]
    user_ids: np.ndarray
    item_ids: np.ndarray
    behaviour_names: list[str]
    item_features: np.ndarray | None = None
    item_feature_names: list[str] = field(default_factory=list)
    user_features: pd.DataFrame | None = None
    source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def events(self) -> pd.DataFrame:
        """The columns as a (new) DataFrame, ids as int64: for inspection and small logs."""
        frame = pd.DataFrame({k: v for k, v in self.columns.items()})
        return frame.astype({"user": np.int64, "item": np.int64})

    @property
    def n_users(self) -> int:
        return int(len(self.user_ids))

    @property
    def n_items(self) -> int:
        return int(len(self.item_ids))

    @property
    def n_interactions(self) -> int:
        return int(len(self.columns["user"]))

    def user_index(self) -> dict:
        """Raw user id -> contiguous index."""
        return {raw: i for i, raw in enumerate(self.user_ids.tolist())}

    def item_index(self) -> dict:
        """Raw item id -> contiguous index."""
        return {raw: i for i, raw in enumerate(self.item_ids.tolist())}


def encode_ids(raw: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous codes for raw ids, ordered by the sorted raw id (numeric order when numeric).

    :return: ``(codes (n,) int64, uniques (k,))`` with ``uniques[codes] == raw``.
    """
    codes, uniques = pd.factorize(raw, sort=True)
    return codes.astype(np.int64), np.asarray(uniques)


def build_table(
    frame: pd.DataFrame,
    *,
    source: str,
    item_features: pd.DataFrame | None = None,
    user_features: pd.DataFrame | None = None,
    notes: list[str] | None = None,
) -> InteractionTable:
    """Turn a frame with raw ``user``, ``item``, ``ts`` and optional ``behaviour``, ``value``,
    ``session``, ``pscore`` columns into an :class:`InteractionTable`.

    ``item_features`` / ``user_features`` are indexed by raw id; rows for ids absent from
    the log are dropped, ids without a row get zeros (items) or NaN (users).
    """
    users, user_ids = encode_ids(frame["user"])
    items, item_ids = encode_ids(frame["item"])
    if "behaviour" in frame and frame["behaviour"].notna().any():
        names = behaviour_vocabulary(frame["behaviour"].astype(str))
        lookup = {n: i for i, n in enumerate(names)}
        behaviour = frame["behaviour"].astype(str).map(lookup).to_numpy(np.int8)
    else:
        names, behaviour = ["interaction"], np.zeros(len(frame), np.int8)
    value = frame["value"].to_numpy(np.float32) if "value" in frame else np.ones(len(frame), np.float32)
    events = {"user": users, "item": items, "ts": frame["ts"].to_numpy(np.int64), "behaviour": behaviour, "value": value}
    for extra, dtype in (("session", np.int64), ("pscore", np.float32)):
        if extra in frame:
            col = frame[extra]
            events[extra] = encode_ids(col)[0] if extra == "session" else col.to_numpy(dtype)
    return InteractionTable(events, user_ids, item_ids, names, *align_features(item_ids, user_ids, item_features, user_features), source,
                            list(notes or []))  # fmt: skip


def align_features(item_ids: np.ndarray, user_ids: np.ndarray, item_features: pd.DataFrame | None,
              user_features: pd.DataFrame | None) -> tuple[np.ndarray | None, list[str], pd.DataFrame | None]:
    """Align side features indexed by raw id to the contiguous ids: ``(item (n_items, F), names, users)``."""
    feats, feat_names = None, []
    if item_features is not None:
        aligned = item_features.reindex(item_ids).fillna(0.0)
        feats, feat_names = aligned.to_numpy(np.float32), [str(c) for c in aligned.columns]
    ufeats = user_features.reindex(user_ids).reset_index(drop=True) if user_features is not None else None
    return feats, feat_names, ufeats
