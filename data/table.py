"""The canonical interaction table every reader produces.

One row per logged event, with contiguous integer ids:

======== ======= ===========================================================
column   dtype   meaning
======== ======= ===========================================================
user     int64   0 … n_users-1  (raw id: ``user_ids[user]``)
item     int64   0 … n_items-1  (raw id: ``item_ids[item]``)
ts       int64   event time in seconds (or an order key for logs without time)
behaviour int8   index into ``behaviour_names`` (view, click, cart, purchase, …)
value    float32 the event's value: a rating, a funnel depth, 1.0 when absent
======== ======= ===========================================================

Optional columns ``session`` (int64) and ``pscore`` (float32, the logging policy's
propensity for logs generated in a simulator) are carried when the source has them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

REQUIRED_COLUMNS = ("user", "item", "ts", "behaviour", "value")

#: Known behaviour names in funnel order; others sort after them alphabetically.
BEHAVIOUR_ORDER = ("view", "pv", "impression", "click", "fav", "like", "cart", "purchase", "buy")


def behaviour_vocabulary(names: "pd.Series | np.ndarray") -> list[str]:
    """Deterministic behaviour vocabulary: known funnel stages first, then the rest sorted."""
    present = set(pd.unique(np.asarray(names, dtype=object)).tolist())
    known = [b for b in BEHAVIOUR_ORDER if b in present]
    return known + sorted(str(b) for b in present - set(known))


@dataclass
class InteractionTable:
    """A logged dataset in canonical form (see the module docstring).

    :param events: the canonical table (``REQUIRED_COLUMNS`` plus optional ``session``, ``pscore``).
    :param user_ids: raw user id of each contiguous user index, shape (n_users,).
    :param item_ids: raw item id of each contiguous item index, shape (n_items,).
    :param behaviour_names: name of each behaviour code.
    :param item_features: side features, shape (n_items, F) float32, or None.
    :param item_feature_names: the F feature names.
    :param user_features: one row per user index (any columns), or None.
    :param source: where the table was read from (for reports and errors).
    """

    events: pd.DataFrame
    user_ids: np.ndarray
    item_ids: np.ndarray
    behaviour_names: list[str]
    item_features: np.ndarray | None = None
    item_feature_names: list[str] = field(default_factory=list)
    user_features: pd.DataFrame | None = None
    source: str = ""

    @property
    def n_users(self) -> int:
        return int(len(self.user_ids))

    @property
    def n_items(self) -> int:
        return int(len(self.item_ids))

    @property
    def n_interactions(self) -> int:
        return int(len(self.events))

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
    events = pd.DataFrame(
        {
            "user": users,
            "item": items,
            "ts": frame["ts"].to_numpy(np.int64),
            "behaviour": behaviour,
            "value": value,
        }
    )
    for extra, dtype in (("session", np.int64), ("pscore", np.float32)):
        if extra in frame:
            col = frame[extra]
            events[extra] = encode_ids(col)[0] if extra == "session" else col.to_numpy(dtype)
    feats, feat_names = None, []
    if item_features is not None:
        aligned = item_features.reindex(item_ids).fillna(0.0)
        feats, feat_names = aligned.to_numpy(np.float32), [str(c) for c in aligned.columns]
    ufeats = user_features.reindex(user_ids).reset_index(drop=True) if user_features is not None else None
    return InteractionTable(events, user_ids, item_ids, names, feats, feat_names, ufeats, source)
