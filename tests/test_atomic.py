"""Atomic writes: the destination is the old file or the new one, never half of one."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from seqrec.infra.atomic import atomic_write, write_json_atomic


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "out" / "results.json"
    write_json_atomic(path, {"v": 1})
    with pytest.raises(RuntimeError, match="disk gone"):
        with atomic_write(path) as fh:
            fh.write('{"v": 2, "half": ')
            raise RuntimeError("disk gone")
    assert json.loads(path.read_text()) == {"v": 1}
    assert sorted(p.name for p in path.parent.iterdir()) == ["results.json"]


def test_json_of_numpy_values_and_file_mode(tmp_path: Path) -> None:
    obj = {"n": np.int64(3), "x": np.float32(0.5), "v": np.arange(3), "p": tmp_path, "b": np.bool_(True), "t": torch.tensor(0.25)}
    path = write_json_atomic(tmp_path / "a" / "b.json", obj)
    got = json.loads(path.read_text())
    assert got == {"n": 3, "x": 0.5, "v": [0, 1, 2], "p": str(tmp_path), "b": True, "t": 0.25}
    assert isinstance(got["n"], int) and got["b"] is True
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600


def test_bytes_mode_and_bad_mode(tmp_path: Path) -> None:
    with atomic_write(tmp_path / "x.bin", "wb") as fh:
        fh.write(b"\x00\x01")
    assert (tmp_path / "x.bin").read_bytes() == b"\x00\x01"
    with pytest.raises(ValueError, match="mode"):
        with atomic_write(tmp_path / "y", "a"):
            pass
