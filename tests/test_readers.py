"""Readers turn every supported format into the canonical table, and bad input into one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seqrec.infra.errors import DataFormatError, SeqrecError
from seqrec.data.readers import ColumnMap, detect_format, read_log


def test_movielens_100k_counts_and_features(ml100k_path: Path) -> None:
    table = read_log(ml100k_path)
    assert (table.n_users, table.n_items, table.n_interactions) == (943, 1682, 100000)
    assert table.item_features.shape == (1682, 19)
    # u.item line 1 is Toy Story: Animation, Children's, Comedy
    toy = table.item_index()[1]
    on = [n for n, f in zip(table.item_feature_names, table.item_features[toy]) if f]
    assert on == ["genre:Animation", "genre:Children's", "genre:Comedy"]
    assert table.user_features.shape[0] == 943
    assert table.events["value"].between(1, 5).all()


def test_bad_item_on_line_57_names_the_line(ml100k_path: Path, tmp_path: Path) -> None:
    lines = (ml100k_path / "u.data").read_text().splitlines(keepends=True)
    fields = lines[56].split("\t")
    lines[56] = "\t".join([fields[0], "abc", *fields[2:]])
    (tmp_path / "u.data").write_text("".join(lines))
    with pytest.raises(DataFormatError, match=r"line 57, column 'item': 'abc' is not an integer"):
        read_log(tmp_path)


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_ratings_csv_through_generic_reader(tmp_path: Path) -> None:
    f = _write(tmp_path / "my_ratings.csv", "userId,movieId,rating,timestamp\n1,10,4.0,100\n1,11,3.5,90\n2,10,5.0,50\n")
    table = read_log(f, columns="user=userId,item=movieId,time=timestamp,value=rating")
    assert (table.n_users, table.n_items, table.n_interactions) == (2, 2, 3)
    assert table.events["value"].tolist() == [4.0, 3.5, 5.0]
    assert table.item_ids.tolist() == [10, 11]


def test_ratings_csv_detected_as_movielens(tmp_path: Path) -> None:
    f = _write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,10,4.0,100\n")
    _write(tmp_path / "movies.csv", 'movieId,title,genres\n10,"A, film",Action|Comedy\n')
    assert detect_format(f) == "ml-csv"
    table = read_log(f)
    assert table.item_feature_names == ["genre:Action", "genre:Comedy"]


def test_ratings_dat_double_colon(tmp_path: Path) -> None:
    f = _write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978300000\n")
    table = read_log(f)
    assert table.n_interactions == 3 and table.n_items == 2


def test_session_log_semicolon_with_date(tmp_path: Path) -> None:
    text = "session;item;offset;day;event\ns1;A;0;2024-01-01;view\ns1;B;30;2024-01-01;cart\ns2;A;5;2024-01-02;view\n"
    f = _write(tmp_path / "sessions.csv", text)
    table = read_log(f, columns="session=session,item=item,time=offset,date=day,behaviour=event", sep=";")
    assert table.n_users == 2  # each session is its own sequence
    assert table.behaviour_names == ["view", "cart"]
    ts = table.events["ts"].to_numpy()
    assert ts[1] - ts[0] == 30 and ts[2] - ts[0] == 86400 + 5


def test_headerless_positions_and_tsv(tmp_path: Path) -> None:
    f = _write(tmp_path / "log.tsv", "u1\ti1\t10\tbuy\nu1\ti2\t20\tclick\n")
    table = read_log(f, columns="user=0,item=1,time=2,behaviour=3")
    assert table.behaviour_names == ["click", "buy"]
    assert table.events["behaviour"].tolist() == [1, 0]


def test_recbole_inter(tmp_path: Path) -> None:
    f = _write(tmp_path / "x.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t5\t3\t10\n2\t6\t4\t11\n")
    table = read_log(f)
    assert table.n_interactions == 2 and table.events["value"].tolist() == [3.0, 4.0]


def test_parquet_log(tmp_path: Path) -> None:
    f = tmp_path / "log.parquet"
    pd.DataFrame({"u": ["a", "b"], "i": [1, 2], "t": [5, 6]}).to_parquet(f)
    table = read_log(f, columns="user=u,item=i,time=t")
    assert table.n_users == 2


@pytest.mark.parametrize(
    ("text", "columns", "sep", "pattern"),
    [
        ("", "user=0,item=1,time=2", None, "file is empty"),
        ("user,item,time\n1,2,3\n", "user=user,item=product,time=time", None, r"line 1: no column 'product'"),
        ("user,item,time\n1,2,3\n1,2,x\n", "user=user,item=item,time=time", None, r"line 3, column 'time': 'x' is not a number"),
        ("user,item,time\n1,2,3\n1,2,3,4\n", "user=user,item=item,time=time", None, r"line 3: ragged line: expected 3 fields, found 4"),
        ("user,item,time\n1,2,3\n1,2\n", "user=user,item=item,time=time", None, r"line 3, column 'time': missing value"),
        ("user;item;time\n1;2;3\n", "user=user,item=item,time=time", None, r"wrong separator"),
        ("1,2,3\n\n1,2,3\n", "user=0,item=1,time=2", None, r"line 2: empty line"),
    ],
)
def test_bad_input_one_line_errors(tmp_path: Path, text: str, columns: str, sep: str | None, pattern: str) -> None:
    f = _write(tmp_path / "log.csv", text)
    with pytest.raises(SeqrecError, match=pattern) as info:
        read_log(f, columns=columns, sep=sep)
    assert "\n" not in str(info.value)


def test_wrong_encoding_names_line(tmp_path: Path) -> None:
    f = tmp_path / "log.csv"
    f.write_bytes("user,item,time\n1,a,3\n2,Misérables,4\n".encode("latin-1"))
    with pytest.raises(DataFormatError, match=r"line 3: cannot decode byte 0xe9 as utf-8"):
        read_log(f, columns="user=user,item=item,time=time")


def test_unknown_format_and_columns(tmp_path: Path) -> None:
    f = _write(tmp_path / "x.xyz", "a")
    with pytest.raises(SeqrecError, match="unknown format"):
        read_log(f)
    with pytest.raises(SeqrecError, match="unknown format 'nope'"):
        read_log(f, format="nope")
    with pytest.raises(SeqrecError, match="unknown key 'usr'"):
        ColumnMap.parse("usr=0,item=1,time=2")
    with pytest.raises(SeqrecError, match="must map item and user"):
        ColumnMap.parse("item=1,time=2")  # no time is fine (file order, issue 17); no user is not


def test_trailing_blank_lines_are_fine(tmp_path: Path) -> None:
    f = _write(tmp_path / "log.csv", "1,2,3\n4,5,6\n\n\n")
    assert read_log(f, columns="user=0,item=1,time=2").n_interactions == 2
