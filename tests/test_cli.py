"""The `seqrec` command line: exit codes, one-line errors, JSON output, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seqrec.cli.main import main


def run(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_info_json_on_movielens(capsys, ml100k_path: Path) -> None:
    code, out, _ = run(capsys, "data", "info", str(ml100k_path), "--json")
    stats = json.loads(out)
    assert code == 0
    assert (stats["n_users"], stats["n_items"], stats["n_interactions"]) == (943, 1682, 100000)
    assert stats["behaviours"] == {"rating": 100000}


def test_bad_line_is_one_line_and_nonzero(capsys, ml100k_path: Path, tmp_path: Path) -> None:
    lines = (ml100k_path / "u.data").read_text().splitlines(keepends=True)
    f = lines[56].split("\t")
    lines[56] = "\t".join([f[0], "abc", *f[2:]])
    (tmp_path / "u.data").write_text("".join(lines))
    code, out, err = run(capsys, "data", "info", str(tmp_path))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "line 57" in err and "'abc'" in err


def test_debug_shows_traceback(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("")
    with pytest.raises(ValueError, match="file is empty"):
        main(["--debug", "data", "info", str(tmp_path / "x.csv"), "--columns", "user=0,item=1,time=2"])


def test_synth_twice_is_byte_identical(capsys, tmp_path: Path) -> None:
    for name in ("a", "b"):
        code, _, _ = run(capsys, "data", "synth", "--users", "60", "--items", "40", "--seed", "7", "--out", str(tmp_path / name))
        assert code == 0
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files and files == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    code, out, _ = run(capsys, "data", "info", str(tmp_path / "a"), "--json")
    assert json.loads(out)["behaviours"].keys() <= {"view", "click", "cart", "purchase"}


def test_prepare_reports_cache_hit(capsys, tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text("uid;sku;t\n" + "".join(f"{u};{i};{i}\n" for u in range(4) for i in range(5)))
    args = ("data", "prepare", str(log), "--columns", "user=uid,item=sku,time=t", "--sep", ";", "--json")
    first = json.loads(run(capsys, *args)[1])
    second = json.loads(run(capsys, *args)[1])
    assert (first["cache_hit"], second["cache_hit"]) == (False, True)
    assert first["split_targets"] == {"train": 8, "valid": 4, "test": 4}


def test_help_everywhere(capsys) -> None:
    for args in (["--help"], ["data", "--help"], ["data", "info", "--help"], ["train", "--help"], ["evaluate", "--help"]):
        code, out, _ = run(capsys, *args)
        assert code == 0 and "Usage" in out, args
    code, out, _ = run(capsys)  # no arguments: the help, as a usage error
    assert "Usage" in out
