"""Preprocessing counts what it drops; splits and padded histories match slow references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seqrec.infra.errors import SeqrecError
from seqrec.data.prepare import prepare_dataset
from seqrec.data.preprocess import PrepConfig, preprocess
from seqrec.data.sequences import PAD, TEST, TRAIN, VALID, SequenceData, SplitConfig
from seqrec.data.table import build_table


def _table(rows: list[tuple]) -> "InteractionTable":  # noqa: F821
    frame = pd.DataFrame(rows, columns=["user", "item", "ts", "value"])
    return build_table(frame, source="test")


def test_kcore_iterates_to_fixed_point() -> None:
    # item 9 has one event; removing it leaves user "c" with 2 events < 3, which then
    # leaves item 8 with 1 event < 2: only a second and third pass find that.
    rows = [("a", 1, 1, 1), ("a", 2, 2, 1), ("a", 8, 3, 1), ("b", 1, 1, 1), ("b", 2, 2, 1), ("b", 3, 3, 1),
            ("c", 8, 1, 1), ("c", 3, 2, 1), ("c", 9, 3, 1), ("d", 1, 1, 1), ("d", 2, 2, 1), ("d", 3, 3, 1)]  # fmt: skip
    table, report = preprocess(_table(rows), PrepConfig(min_user_interactions=3, min_item_interactions=2))
    assert report.core_iterations >= 3
    ev = table.events
    assert set(table.user_ids) == {"b", "d"} and set(table.item_ids) == {1, 2, 3}
    assert (ev.groupby("user").size() >= 3).all() and (ev.groupby("item").size() >= 2).all()
    assert report.rows_read - report.rows_kept == sum(report.dropped.values())


def test_threshold_dedup_and_stable_order() -> None:
    rows = [("a", 1, 5, 5), ("a", 2, 5, 2), ("a", 3, 5, 4), ("a", 1, 9, 4), ("a", 4, 1, 4)]
    table, report = preprocess(_table(rows), PrepConfig(min_value=4, dedup="first", min_user_interactions=1))
    assert report.dropped["value < 4"] == 1 and report.dropped["duplicates (first)"] == 1
    # sorted by time; ties at ts=5 keep source order (item 1 before item 3)
    assert table.item_ids[table.events["item"]].tolist() == [4, 1, 3]


def test_leave_last_out_and_histories_match_reference() -> None:
    rng = np.random.default_rng(0)
    rows = [(u, int(rng.integers(20)), t, 1.0) for u in range(30) for t in range(int(rng.integers(3, 12)))]
    table, _ = preprocess(_table(rows), PrepConfig())
    seq = SequenceData.from_table(table)
    for u in range(seq.n_users):
        lo, hi = seq.user_ptr[u], seq.user_ptr[u + 1]
        assert seq.split[hi - 1] == TEST and seq.split[hi - 2] == VALID and (seq.split[lo : hi - 2] == TRAIN).all()
    pos = np.concatenate([seq.positions(s) for s in ("train", "valid", "test")])
    items, _ = seq.histories(pos, 4)
    for p, row in zip(pos, items):
        u = seq.users[p]
        past = seq.items[seq.user_ptr[u] : p][-4:].tolist()
        assert row.tolist() == [PAD] * (4 - len(past)) + past
    assert len(seq.positions("test")) == seq.n_users
    last, _ = seq.user_histories(np.arange(seq.n_users), 3, upto="valid")
    assert (last[:, -1] == seq.items[seq.user_ptr[1:] - 2]).all()


def test_time_split_is_global() -> None:
    rows = [(u, i, u * 10 + i, 1.0) for u in range(10) for i in range(5)]
    table, _ = preprocess(_table(rows), PrepConfig(min_user_interactions=1))
    seq = SequenceData.from_table(table, SplitConfig(mode="time", valid_fraction=0.2, test_fraction=0.2))
    t_valid_min = seq.ts[seq.split == VALID].min()
    assert seq.ts[seq.split == TRAIN].max() < t_valid_min <= seq.ts[seq.split == VALID].max() < seq.ts[seq.split == TEST].min()


def test_too_short_users_are_explained() -> None:
    table, _ = preprocess(_table([("a", 1, 1, 1), ("a", 2, 2, 1)]), PrepConfig(min_user_interactions=1))
    with pytest.raises(SeqrecError, match="fewer than 3 events"):
        SequenceData.from_table(table)


def test_cache_reuse_and_invalidation(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text("user,item,ts\n" + "".join(f"{u},{i},{i}\n" for u in range(5) for i in range(6)))
    cache = tmp_path / "cache"
    first = prepare_dataset(log, cache_dir=cache)
    again = prepare_dataset(log, cache_dir=str(cache))  # a str path works as well as a Path
    assert not first.meta["cache_hit"] and again.meta["cache_hit"]
    np.testing.assert_array_equal(first.items, again.items)
    assert first.user_ids.tolist() == again.user_ids.tolist()
    other_opts = prepare_dataset(log, cache_dir=cache, prep=PrepConfig(min_user_interactions=4))
    assert not other_opts.meta["cache_hit"]
    log.write_text(log.read_text() + "9,1,1\n9,2,2\n9,3,3\n")
    changed = prepare_dataset(log, cache_dir=cache)
    assert not changed.meta["cache_hit"] and changed.n_users == 6
    assert not list(cache.glob("*.*.*")), "no temporary folders left behind"


def test_failed_prepare_leaves_no_cache_entry(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text("user,item,ts\n1,2,x\n")
    cache = tmp_path / "cache"
    with pytest.raises(SeqrecError):
        prepare_dataset(log, cache_dir=cache)
    assert not cache.exists() or not any(p.is_dir() for p in cache.iterdir())


def test_damaged_cache_entry_is_rebuilt(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text("user,item,ts\n" + "".join(f"{u},{i},{i}\n" for u in range(3) for i in range(4)))
    cache = tmp_path / "cache"
    seq = prepare_dataset(log, cache_dir=cache)
    items = np.array(seq.items)  # a copy: the entry's file is about to be truncated under its mapping
    (cache / seq.meta["key"] / "events.arrow").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="rebuilding damaged cache entry"):
        rebuilt = prepare_dataset(log, cache_dir=cache)
    assert not rebuilt.meta["cache_hit"]
    np.testing.assert_array_equal(rebuilt.items, items)
    assert prepare_dataset(log, cache_dir=cache).meta["cache_hit"]
