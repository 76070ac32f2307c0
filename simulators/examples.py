"""Training and evaluation examples for the response model, built from a :class:`SequenceData`.

A simulated user's history holds the items they *clicked* (every behaviour except the
real-negative ones such as ``view``), so the response model sees the same: the history of
a logged event is the user's last ``L`` positive events before it, left-padded with
:data:`~seqrec.data.sequences.PAD`. Everything here is one vectorised gather per call.

Negative sampling draws items the user never interacted with, uniformly over the
catalogue, by rejection against the sorted ``user * n_items + item`` keys of the log.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqrec.infra.errors import SeqrecError
from seqrec.data.sequences import PAD, SPLIT_NAMES, SequenceData


def positive_mask(seq: SequenceData, negative_behaviours: tuple[str, ...]) -> np.ndarray:
    """Whether each event is a click (True) or a real negative (False), shape (n_events,)."""
    codes = [i for i, name in enumerate(seq.behaviour_names) if name in negative_behaviours]
    if len(codes) == len(seq.behaviour_names):
        raise SeqrecError(f"every behaviour of this log ({', '.join(seq.behaviour_names)}) is a negative one; "
                          f"nothing counts as a click (check SimulatorConfig.negative_behaviours)")
    return ~np.isin(seq.behaviours, codes)


@dataclass(frozen=True)
class ClickLog:
    """The positive events of a log, indexed for fast history gathers.

    :param positive: click flag of every event, shape (n_events,).
    :param pos_flat: flat positions of the positive events, shape (n_pos,).
    :param before: positives before each event position (over the flat array), shape (n_events + 1,).
    """

    seq: SequenceData
    positive: np.ndarray
    pos_flat: np.ndarray
    before: np.ndarray

    @classmethod
    def build(cls, seq: SequenceData, negative_behaviours: tuple[str, ...]) -> "ClickLog":
        positive = positive_mask(seq, negative_behaviours)
        before = np.concatenate([[0], np.cumsum(positive)]).astype(np.int64)
        return cls(seq=seq, positive=positive, pos_flat=np.flatnonzero(positive), before=before)

    @property
    def has_real_negatives(self) -> bool:
        """Whether the log holds shown-but-not-clicked events."""
        return bool((~self.positive).any())

    def histories(self, positions: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """The last ``max_len`` clicks of the same user strictly before each position.

        :param positions: flat event positions, shape (n,); ``n_events`` is allowed (= after the
            user's last event only when it is the position right after that user's events).
        :return: ``(items, behaviours)``, each (n, max_len) int64, left-padded with PAD.
        """
        seq = self.seq
        positions = np.asarray(positions, np.int64)
        users = seq.users[np.minimum(positions, seq.n_events - 1)]
        return self._gather(self.before[positions], self.before[seq.user_ptr[users]], max_len)

    def user_histories(self, users: np.ndarray, max_len: int, upto: str = "test") -> tuple[np.ndarray, np.ndarray]:
        """Each user's last ``max_len`` clicks up to and including split ``upto``, shape (n, max_len)."""
        seq = self.seq
        users = np.asarray(users, np.int64)
        end = seq.user_ptr[users + 1]
        if upto != "test":
            allowed = (seq.split <= SPLIT_NAMES[upto]).astype(np.int64)
            counts = np.add.reduceat(allowed, seq.user_ptr[:-1])
            end = seq.user_ptr[users] + counts[users]
        return self._gather(self.before[end], self.before[seq.user_ptr[users]], max_len)

    def _gather(self, end: np.ndarray, start: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        idx = end[:, None] - max_len + np.arange(max_len)[None, :]
        valid = idx >= start[:, None]
        flat = self.pos_flat[np.where(valid, idx, 0)] if len(self.pos_flat) else np.zeros(idx.shape, np.int64)
        items = np.where(valid, self.seq.items[flat], PAD)
        behaviours = np.where(valid, self.seq.behaviours[flat].astype(np.int64), PAD)
        return items.astype(np.int64), behaviours.astype(np.int64)


class UntouchedSampler:
    """Uniform draws of items a user never interacted with in the given events.

    :param users: users of the interactions to exclude, shape (n,).
    :param items: their items, shape (n,).
    :param n_items: catalogue size.
    """

    def __init__(self, users: np.ndarray, items: np.ndarray, n_items: int):
        self.n_items = int(n_items)
        self.keys = np.unique(np.asarray(users, np.int64) * self.n_items + np.asarray(items, np.int64))

    def touched(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Whether each (user, item) pair is among the excluded interactions (same shape as items)."""
        key = np.asarray(users, np.int64).reshape(-1, *([1] * (np.ndim(items) - 1))) * self.n_items + items
        pos = np.clip(np.searchsorted(self.keys, key), 0, max(len(self.keys) - 1, 0))
        return self.keys[pos] == key if len(self.keys) else np.zeros(np.shape(key), bool)

    def sample(self, users: np.ndarray, n: int, rng: np.random.Generator, rounds: int = 20) -> np.ndarray:
        """``n`` untouched items per user, shape (len(users), n) int64 (a user who touched
        nearly the whole catalogue may keep a touched item after ``rounds`` redraws)."""
        users = np.asarray(users, np.int64)
        out = rng.integers(0, self.n_items, size=(len(users), n))
        for _ in range(rounds):
            bad = self.touched(users, out)
            if not bad.any():
                break
            out[bad] = rng.integers(0, self.n_items, size=int(bad.sum()))
        return out
