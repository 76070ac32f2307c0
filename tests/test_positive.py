"""``--positive``, logs without a time column, and the ``pscore`` column (issue 17, the data side)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seqrec.cli.main import main
from seqrec.data.positive import NEGATIVE, parse_positive
from seqrec.data.prepare import prepare_dataset
from seqrec.data.preprocess import PrepConfig, preprocess
from seqrec.data.readers import read_log
from seqrec.data.table import NO_TIME_NOTE
from seqrec.infra.errors import DataFormatError, SeqrecError
from seqrec.simulators.config import SimulatorConfig

# user, item, rating: users interleaved, each user's rows out of item order (file order is the only order)
TRIPLETS = [(7, 30, 5), (3, 10, 1), (7, 10, 2), (3, 31, 4), (7, 11, 4), (3, 12, 5), (7, 32, 3), (3, 30, 2)]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _triplets(path: Path, header: str | None = None, sep: str = ",") -> Path:
    lines = ([header] if header else []) + [sep.join(map(str, row)) for row in TRIPLETS]
    return _write(path, "\n".join(lines) + "\n")


@pytest.fixture()
def rated(tmp_path: Path) -> Path:
    """A log with a behaviour column and ratings 1..5 (time given)."""
    rows = ["user,item,ts,behaviour,value"] + [f"{u},{i},{t},{b},{v}" for t, (u, i, b, v) in enumerate(
        [(1, 1, "click", 5), (1, 2, "view", 4), (1, 3, "click", 3), (1, 4, "view", 1), (2, 1, "click", 4.5), (2, 5, "view", 2), (2, 6, "click", 3)])]
    return _write(tmp_path / "rated.csv", "\n".join(rows) + "\n")


# --- the rule ----------------------------------------------------------------------------


@pytest.mark.parametrize("expr, expected", [
    ("value>=4", [True, True, False, False, True, False, False]),
    ("value > 4", [True, False, False, False, True, False, False]),
    ("value==4.5", [False, False, False, False, True, False, False]),
    (" value == 1 ", [False, False, False, True, False, False, False]),
    ("behaviour==click", [True, False, True, False, True, False, True]),
    ("behavior == view", [False, True, False, True, False, True, False]),
])  # fmt: skip
def test_each_expression_form(rated: Path, expr: str, expected: list[bool]) -> None:
    table = read_log(rated)
    rule = parse_positive(expr)
    assert rule.mask(table).tolist() == expected
    assert parse_positive(str(rule)) == rule  # the canonical form reads back
    seq = prepare_dataset(rated, use_cache=False)
    assert rule.mask(seq).tolist() == expected  # a SequenceData works too (same order here: sorted input)


@pytest.mark.parametrize("expr", ["rating>=4", "value>=", "value=>4", "value<4", "value>=four", "behaviour>=click",
                                  "behaviour==", "value>=4 and value<5", ""])
def test_bad_expression_is_a_one_line_error_naming_it(expr: str, capsys, rated: Path) -> None:
    with pytest.raises(SeqrecError, match="--positive: cannot read") as err:
        parse_positive(expr)
    assert repr(expr) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(SeqrecError, match="cannot read"):
        PrepConfig(positive=expr)
    if expr:
        assert main(["data", "prepare", str(rated), "--positive", expr, "--no-cache"]) == 2
        err_text = capsys.readouterr().err
        assert err_text.count("\n") == 1 and repr(expr) in err_text


def test_unknown_behaviour_names_the_behaviours(rated: Path) -> None:
    with pytest.raises(SeqrecError, match=r"no behaviour 'buy' \(it has: view, click\)"):
        preprocess(read_log(rated), PrepConfig(positive="behaviour==buy"))


def test_failing_events_become_negative_and_are_counted(rated: Path) -> None:
    assert NEGATIVE in SimulatorConfig().negative_behaviours  # the simulator reads them as shown and not clicked
    table, report = preprocess(read_log(rated), PrepConfig(positive="value>=4", min_user_interactions=1))
    names = np.asarray(table.behaviour_names)[table.columns["behaviour"]].tolist()
    assert names == ["click", "view", NEGATIVE, NEGATIVE, "click", NEGATIVE, NEGATIVE]  # passing events keep their name
    assert report.positive == {"rule": "value>=4", "positive": 3, "negative": 4}
    # with min_value too: the rule first, then the filter; the counts are over the rows kept
    _, report = preprocess(read_log(rated), PrepConfig(positive="value>=4", min_value=2, min_user_interactions=1))
    assert report.positive == {"rule": "value>=4", "positive": 3, "negative": 3}
    assert report.dropped["value < 2"] == 1
    # every event passing: no "negative" behaviour at all
    table, report = preprocess(read_log(rated), PrepConfig(positive="value>=1", min_user_interactions=1))
    assert NEGATIVE not in table.behaviour_names and report.positive["negative"] == 0


def test_positive_is_part_of_the_cache_key_and_the_cli_report(rated: Path, tmp_path: Path, capsys) -> None:
    cache = tmp_path / "cache"
    plain = prepare_dataset(rated, prep=PrepConfig(min_user_interactions=1), cache_dir=cache)
    ruled = prepare_dataset(rated, prep=PrepConfig(min_user_interactions=1, positive="value>=4"), cache_dir=cache)
    assert plain.meta["key"] != ruled.meta["key"] and not ruled.meta["cache_hit"]
    again = prepare_dataset(rated, prep=PrepConfig(min_user_interactions=1, positive="value>=4"), cache_dir=cache)
    assert again.meta["cache_hit"] and again.meta["report"]["positive"] == {"rule": "value>=4", "positive": 3, "negative": 4}
    assert NEGATIVE in again.behaviour_names
    assert main(["data", "prepare", str(rated), "--positive", "value>=4", "--min-user", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["report"]["positive"]["negative"] == 4 and out["behaviours"][NEGATIVE] == 4


# --- logs without a time column -----------------------------------------------------------


def _expected_order() -> list[tuple[int, int]]:
    """(raw user, raw item) in the order preprocessing must give: by user, then file order."""
    return [(u, i) for u, i, _ in sorted(TRIPLETS, key=lambda r: r[0])]  # sorted() is stable


@pytest.mark.parametrize("layout", ["headerless", "header", "tsv-header", "multi-char-sep"])
def test_triplets_without_time_are_read_in_file_order_with_a_note(tmp_path: Path, layout: str) -> None:
    if layout == "headerless":
        path, kw = _triplets(tmp_path / "ratings.csv"), {"columns": "user=0,item=1,value=2"}
    elif layout == "header":
        path, kw = _triplets(tmp_path / "ratings.csv", "user_id,item_id,rating"), {}  # names detected, no time
    elif layout == "tsv-header":
        path, kw = _triplets(tmp_path / "ratings.tsv", "user\titem\tvalue", sep="\t"), {}
    else:
        path, kw = _triplets(tmp_path / "ratings.dat", sep="::"), {"columns": "user=0,item=1,value=2", "sep": "::", "format": "csv"}
    table = read_log(path, **kw)
    assert table.notes == [NO_TIME_NOTE]
    assert table.columns["ts"].tolist() == list(range(len(TRIPLETS)))  # ts = the row number
    seq = prepare_dataset(path, **kw, prep=PrepConfig(positive="value>=4"), use_cache=False)
    assert list(zip(seq.user_ids[seq.users].tolist(), seq.item_ids[seq.items].tolist())) == _expected_order()
    assert seq.meta["report"]["notes"] == [NO_TIME_NOTE]
    assert seq.meta["report"]["positive"] == {"rule": "value>=4", "positive": 4, "negative": 4}


def test_no_time_over_several_files_and_parquet(tmp_path: Path) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    _write(folder / "part-0.csv", "user,item,rating\n1,5,4\n2,6,1\n")
    _write(folder / "part-1.csv", "user,item,rating\n1,7,2\n2,5,5\n")
    table = read_log(folder)
    assert table.columns["ts"].tolist() == [0, 1, 2, 3] and table.notes == [NO_TIME_NOTE]  # counted over all files
    pq = tmp_path / "log.parquet"
    pd.DataFrame({"user": [1, 1, 2], "item": [3, 4, 3], "rating": [5.0, 1.0, 3.0]}).to_parquet(pq)
    table = read_log(pq)
    assert table.columns["ts"].tolist() == [0, 1, 2] and table.notes == [NO_TIME_NOTE]


def test_a_headerless_file_without_columns_says_how_to_map_it(tmp_path: Path) -> None:
    with pytest.raises(SeqrecError, match=r"without a header.*--columns user=0,item=1,value=2"):
        read_log(_triplets(tmp_path / "ratings.csv"))
    with pytest.raises(SeqrecError, match="date=COL needs time=COL"):
        read_log(_triplets(tmp_path / "r.csv"), columns="user=0,item=1,date=2")


def test_a_log_with_time_has_no_note(rated: Path) -> None:
    assert read_log(rated).notes == []
    _, report = preprocess(read_log(rated), PrepConfig(min_user_interactions=1))
    assert report.notes == [] and report.positive is None


# --- pscore -------------------------------------------------------------------------------


def test_pscore_round_trips_through_the_cache(tmp_path: Path) -> None:
    rows = [(2, 10, 0.5), (1, 11, 0.25), (2, 12, 1.0), (1, 10, 0.125), (1, 12, 0.75), (2, 11, 0.0625)]
    path = _write(tmp_path / "log.csv", "uid,iid,rating,prop\n" + "".join(f"{u},{i},{k},{p}\n" for k, (u, i, p) in enumerate(rows)))
    columns = "user=uid,item=iid,value=rating,pscore=prop"
    cache = tmp_path / "cache"
    first = prepare_dataset(path, columns=columns, cache_dir=cache)
    second = prepare_dataset(path, columns=columns, cache_dir=cache)
    assert not first.meta["cache_hit"] and second.meta["cache_hit"]
    want = {(u, i): p for u, i, p in rows}
    for seq in (first, second):
        assert seq.pscore is not None and seq.pscore.dtype == np.float32 and seq.pscore.shape == (seq.n_events,)
        got = {(int(seq.user_ids[u]), int(seq.item_ids[i])): float(p) for u, i, p in zip(seq.users, seq.items, seq.pscore)}
        assert got == want  # aligned with the events after sorting by user
    # a header column named pscore is found without --columns; none: no array
    auto = _write(tmp_path / "auto.csv", "user,item,rating,pscore\n" + "".join(f"{u},{i},{k},{p}\n" for k, (u, i, p) in enumerate(rows)))
    assert read_log(auto).columns["pscore"].tolist() == [p for _, _, p in rows]
    assert prepare_dataset(_triplets(tmp_path / "t.csv"), columns="user=0,item=1,value=2", use_cache=False).pscore is None


@pytest.mark.parametrize("cell, why", [("1.5", "pscore 1.5 is not a propensity in (0, 1]"), ("0", "pscore 0 is not a propensity"),
                                       ("-0.2", "pscore -0.2 is not"), ("abc", "'abc' is not a number")])
@pytest.mark.parametrize("sep", [",", "::"])
def test_bad_pscore_cell_is_a_one_line_error_with_its_line(tmp_path: Path, cell: str, why: str, sep: str) -> None:
    lines = ["user,item,value,pscore", "1,2,3,0.5", "1,3,4,0.2", f"2,2,5,{cell}", "2,4,1,1"]
    path = _write(tmp_path / "log.csv", "\n".join(line.replace(",", sep) for line in lines) + "\n")
    with pytest.raises(DataFormatError) as err:
        read_log(path, format="csv", columns="user=user,item=item,value=value,pscore=pscore", sep=sep)
    msg = str(err.value)
    assert "line 4" in msg and "pscore" in msg and why in msg and "\n" not in msg


def test_every_command_that_prepares_a_log_takes_positive() -> None:
    import typer

    from seqrec.cli.main import app

    root = typer.main.get_command(app)
    for command in ("prepare", "pretrain", "data prepare", "encoder evaluate", "ope run"):
        cmd = root
        for part in command.split():
            cmd = cmd.commands[part]  # type: ignore[attr-defined]
        params = {p.name: p for p in cmd.params}
        assert "positive" in params and params["positive"].default == PrepConfig().positive, command
        assert "--positive" in params["positive"].opts, command
