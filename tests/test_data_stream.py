"""The streamed data layer gives today's prepared datasets, and bad rows deep in big files still one line.

"Today's" is the pandas pipeline the streamed one replaced, frozen below as ``_reference``:
read the log into a frame, k-core with groupby counts, dedup with ``duplicated``, a stable
``sort_values`` by (user, time, row), ``factorize`` for the ids, leave-last-out labels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seqrec.data.prepare import prepare_dataset
from seqrec.data.preprocess import PrepConfig, chronological_order
from seqrec.data.readers import read_log
from seqrec.data.sequences import SequenceData, split_labels, SplitConfig
from seqrec.data.table import behaviour_vocabulary
from seqrec.infra.errors import DataFormatError, SeqrecError


def _reference(raw: pd.DataFrame, cfg: PrepConfig, split: SplitConfig = SplitConfig()) -> dict:
    """Today's (pandas) pipeline on a frame of raw ``user, item, ts, behaviour, value`` columns."""
    ev = raw.assign(_row=np.arange(len(raw)))
    if cfg.min_value is not None:
        ev = ev[ev["value"].to_numpy() >= cfg.min_value]
    if cfg.dedup != "none":
        keys = ["user", "item", "ts", "behaviour"] if cfg.dedup == "exact" else ["user", "item"]
        ev = ev.sort_values(["user", "ts", "_row"], kind="stable")
        ev = ev[~ev.duplicated(keys, keep="last" if cfg.dedup == "last" else "first").to_numpy()]
    while True:
        keep = (ev.groupby("user")["item"].transform("size") >= cfg.min_user_interactions) & (
            ev.groupby("item")["user"].transform("size") >= cfg.min_item_interactions)
        if keep.all():
            break
        ev = ev[keep.to_numpy()]
    ev = ev.sort_values(["user", "ts", "_row"], kind="stable")
    users, user_ids = pd.factorize(ev["user"], sort=True)
    items, item_ids = pd.factorize(ev["item"], sort=True)
    names = behaviour_vocabulary(ev["behaviour"].astype(str))
    user_ptr = np.concatenate([[0], np.cumsum(np.bincount(users))])
    ts = ev["ts"].to_numpy(np.int64)
    extra = {"pscore": ev["pscore"].to_numpy(np.float32)} if "pscore" in ev else {}
    return extra | {"users": users, "items": items, "ts": ts, "user_ptr": user_ptr, "split": split_labels(user_ptr, ts, split),
            "values": ev["value"].to_numpy(np.float32), "user_ids": np.asarray(user_ids), "item_ids": np.asarray(item_ids),
            "behaviours": ev["behaviour"].map({n: i for i, n in enumerate(names)}).to_numpy(np.int8), "behaviour_names": names}  # fmt: skip


def _assert_same(seq: SequenceData, ref: dict, behaviours: bool = True) -> None:
    for name in ("users", "items", "ts", "user_ptr", "split", "values") + (("behaviours",) if behaviours else ()):
        np.testing.assert_array_equal(getattr(seq, name), ref[name], err_msg=name)
    assert seq.user_ids.tolist() == ref["user_ids"].tolist() and seq.item_ids.tolist() == ref["item_ids"].tolist()
    if behaviours:
        assert seq.behaviour_names == ref["behaviour_names"]
    if "pscore" in ref:
        np.testing.assert_array_equal(seq.pscore, ref["pscore"])
    first = np.zeros(len(ref["items"]), bool)
    first[ref["user_ptr"][:-1]] = True
    for s, code in (("train", 0), ("valid", 1), ("test", 2)):  # the targets of every split
        np.testing.assert_array_equal(seq.positions(s), np.flatnonzero((ref["split"] == code) & ~first))


PREPS = [PrepConfig(), PrepConfig(min_value=4, dedup="first", min_item_interactions=5), PrepConfig(dedup="last", min_user_interactions=5)]


@pytest.mark.parametrize("prep", PREPS, ids=["default", "min4-first-item5", "last-user5"])
def test_ml100k_same_as_today(ml100k_path: Path, tmp_path: Path, prep: PrepConfig) -> None:
    raw = pd.read_csv(ml100k_path / "u.data", sep="\t", header=None, names=["user", "item", "value", "ts"]).assign(behaviour="rating")
    ref = _reference(raw, prep)
    _assert_same(prepare_dataset(ml100k_path, prep=prep, cache_dir=tmp_path / "c"), ref)
    # the same file as a generic headerless TSV goes through the streaming reader
    streamed = prepare_dataset(ml100k_path / "u.data", format="csv", columns="user=0,item=1,value=2,time=3", sep="\t",
                               prep=prep, cache_dir=tmp_path / "c")  # fmt: skip
    _assert_same(streamed, ref, behaviours=False)


@pytest.fixture(scope="module")
def synthetic_default(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from seqrec.data.synth_config import SynthConfig
    from seqrec.data.synthetic import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("synth") / "data", SynthConfig())


@pytest.mark.parametrize("prep", [PrepConfig(), PrepConfig(dedup="exact"), PrepConfig(dedup="first", min_item_interactions=3)],
                         ids=["default", "exact", "first-item3"])  # fmt: skip
def test_synthetic_default_same_as_today(synthetic_default: Path, tmp_path: Path, prep: PrepConfig) -> None:
    raw = pd.read_csv(synthetic_default / "events.csv")
    ref = _reference(raw, prep)
    seq = prepare_dataset(synthetic_default, prep=prep, cache_dir=tmp_path / "c")
    _assert_same(seq, ref)


def test_parquet_folder_and_csv_give_the_same_dataset(synthetic_default: Path, tmp_path: Path) -> None:
    raw = pd.read_csv(synthetic_default / "events.csv").drop(columns="pscore")
    folder = tmp_path / "log"
    folder.mkdir()
    for k, part in enumerate(np.array_split(np.arange(len(raw)), 3)):
        raw.iloc[part].to_parquet(folder / f"part-{k:05d}.parquet", index=False)
    raw.to_csv(tmp_path / "log.csv", index=False)
    cols = "user=user,item=item,time=ts,behaviour=behaviour,value=value"
    from_parquet = prepare_dataset(folder, columns=cols, cache_dir=tmp_path / "c")
    _assert_same(from_parquet, _reference(raw, PrepConfig()))
    _assert_same(prepare_dataset(tmp_path / "log.csv", columns=cols, cache_dir=tmp_path / "c"), _reference(raw, PrepConfig()))


def test_prepared_dataset_is_memory_mapped(synthetic_default: Path, tmp_path: Path) -> None:
    cached = prepare_dataset(synthetic_default, cache_dir=tmp_path / "c")
    in_memory = prepare_dataset(synthetic_default, use_cache=False)
    for name in ("users", "items", "ts", "behaviours", "values", "split", "pscore"):
        arr = getattr(cached, name)
        assert not arr.flags.owndata and not arr.flags.writeable, f"{name} is a copy, not a view of the file"
        np.testing.assert_array_equal(arr, getattr(in_memory, name))
    np.testing.assert_array_equal(cached.item_features, in_memory.item_features)
    again = prepare_dataset(synthetic_default, cache_dir=tmp_path / "c")
    assert again.meta["cache_hit"] and again.meta["report"] == cached.meta["report"]


def test_format_1_entries_still_load(tmp_path: Path) -> None:
    """A bundle written before the Arrow files (``sequences.npz``) loads as before."""
    seq = prepare_dataset(_write_big(tmp_path / "log.csv", 60), use_cache=False)
    arrays = {k: getattr(seq, k) for k in SequenceData._ARRAYS}
    np.savez(tmp_path / "sequences.npz", **arrays, user_ids=seq.user_ids.astype(str), item_ids=seq.item_ids.astype(str))
    meta = {"n_items": seq.n_items, "behaviour_names": seq.behaviour_names, "item_feature_names": [], "id_dtypes": ["i", "i"]}
    (tmp_path / "sequences.json").write_text(json.dumps(meta))
    old = SequenceData.load(tmp_path)
    np.testing.assert_array_equal(old.items, seq.items)
    assert old.user_ids.tolist() == seq.user_ids.tolist()


@pytest.mark.parametrize("layout", ["user-sorted", "time-sorted", "shuffled", "wide-times"])
def test_chronological_order_is_a_stable_sort_by_user_then_time(layout: str) -> None:
    rng = np.random.default_rng(1)
    n = 5_000
    users, ts = rng.integers(0, 50, n), rng.integers(0, 200, n)  # many ties in (user, ts)
    if layout == "user-sorted":
        users, ts = np.sort(users), ts  # users in order, times not
    elif layout == "time-sorted":
        ts = np.sort(ts)
    elif layout == "wide-times":
        ts = ts * (1 << 40)  # too wide to pack: the lexsort fallback
    rows = np.flatnonzero(rng.random(n) < 0.7)
    for subset in (None, rows):
        want = np.lexsort((ts, users)) if subset is None else subset[np.lexsort((ts[subset], users[subset]))]
        np.testing.assert_array_equal(chronological_order(users, ts, subset), want)


# ----------------------------------------------------------------------------- big files, bad rows

N_BIG = 300_000  # several of the streaming reader's batches: the bad row is read long after the first


def _write_big(path: Path, n: int = N_BIG, bad: dict[int, str] | None = None, header: str = "user,item,behaviour,time\n") -> Path:
    """A ``user,item,behaviour,time`` log of ``n`` rows; ``bad`` replaces whole data lines (1-based file lines)."""
    rng = np.random.default_rng(0)
    lines = [f"{u},{i},{b},{t}\n" for u, i, b, t in zip(rng.integers(0, n // 20, n), rng.integers(0, 500, n),
                                                          rng.choice(["pv", "cart", "buy"], n), np.arange(n) + 10**9)]  # fmt: skip
    for line, text in (bad or {}).items():
        lines[line - 2] = text
    path.write_text(header + "".join(lines))
    return path


@pytest.mark.parametrize(
    ("line", "text", "pattern"),
    [
        (250_001, "7,8,pv,yesterday\n", r"line 250001, column 'time': 'yesterday' is not a number"),
        (250_001, "7,8,pv,12,13\n", r"line 250001: ragged line: expected 4 fields, found 5"),
        (250_001, "7,8,pv\n", r"line 250001, column 'time': missing value"),
        (250_001, "\n", r"line 250001: empty line"),
        (250_001, "7,Misérables,pv,12\n", r"line 250001: cannot decode byte 0xe9 as utf-8"),
    ],
    ids=["bad-time", "ragged", "truncated", "blank", "encoding"],
)
def test_bad_row_deep_in_a_big_file_names_its_line(tmp_path: Path, line: int, text: str, pattern: str) -> None:
    path = _write_big(tmp_path / "log.csv", bad={line: text})
    if "é" in text:
        path.write_bytes(path.read_bytes().replace("é".encode(), b"\xe9"))
    with pytest.raises(DataFormatError, match=pattern) as info:
        prepare_dataset(path, cache_dir=tmp_path / "c")
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    assert not (tmp_path / "c").exists() or not any(p.is_dir() for p in (tmp_path / "c").iterdir()), "nothing half-written"


def test_text_id_after_many_numeric_ones_is_an_id(tmp_path: Path) -> None:
    """Ids numeric for the parser's first rows and text later are all text ids, as a whole-file read makes them."""
    path = _write_big(tmp_path / "log.csv", bad={250_001: "alice,8,pv,12\n", 250_002: "alice,9,pv,13\n", 250_003: "alice,9,buy,14\n"})
    table = read_log(path)
    assert table.user_ids.dtype == object and "alice" in set(table.user_ids.tolist())
    raw = pd.read_csv(path, dtype={"user": str})
    ref = _reference(raw.rename(columns={"time": "ts"}).assign(value=1.0), PrepConfig())
    _assert_same(prepare_dataset(path, cache_dir=tmp_path / "c"), ref)


def test_trailing_blank_lines_of_a_big_file_are_fine(tmp_path: Path) -> None:
    path = _write_big(tmp_path / "log.csv", n=200_000)
    path.write_text(path.read_text() + "\n\n")
    assert read_log(path).n_interactions == 200_000


def test_bad_parquet_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    path.write_bytes(b"PAR1 not really")
    with pytest.raises(SeqrecError, match=r"log.parquet: not a readable Parquet file"):
        read_log(path, columns="user=u,item=i,time=t")
