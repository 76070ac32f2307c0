"""LoggedFeedback and its Parquet file format."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import seqrec.ope.logged_feedback as lf_module
from seqrec.ope.logged_feedback import LoggedFeedback
from seqrec.infra.errors import DataFormatError, SeqrecError

META = {"seqrec.n_actions": "4", "seqrec.propensity_source": "known", "seqrec.format_version": "1"}


def _full(n: int = 50, seed: int = 0) -> LoggedFeedback:
    rng = np.random.default_rng(seed)
    return LoggedFeedback(
        context=rng.normal(size=(n, 3)).astype(np.float32),
        action=rng.integers(0, 7, n),
        reward=rng.random(n),
        pscore=rng.uniform(0.01, 1.0, n),
        position=rng.integers(0, 3, n),
        user=rng.integers(0, 1000, n),
        n_actions=7,
        propensity_source="estimated",
    )


def _write(path, columns: dict, metadata: dict | None = META) -> str:
    table = pa.table(columns)
    if metadata is not None:
        table = table.replace_schema_metadata(metadata)
    pq.write_table(table, path)
    return str(path)


def _good_columns() -> dict:
    return {
        "action": pa.array([0, 1, 3, 2], pa.int64()),
        "reward": pa.array([1.0, 0.0, 0.5, 1.0]),
        "pscore": pa.array([0.25, 0.5, 1.0, 0.1]),
    }


def _read_error(path, **kwargs) -> str:
    with pytest.raises(DataFormatError) as excinfo:
        LoggedFeedback.from_parquet(path, **kwargs)
    msg = str(excinfo.value)
    assert isinstance(excinfo.value, SeqrecError)
    assert "\n" not in msg
    assert str(path) in msg
    return msg


# ----------------------------------------------------------------------------------------
# Round trip
# ----------------------------------------------------------------------------------------


def test_round_trip_preserves_everything(tmp_path):
    fb = _full()
    path = fb.to_parquet(tmp_path / "logs.parquet")
    back = LoggedFeedback.from_parquet(path)
    for name in ("context", "action", "reward", "pscore", "position", "user"):
        original, restored = getattr(fb, name), getattr(back, name)
        assert restored.dtype == original.dtype, name
        np.testing.assert_array_equal(restored, original, err_msg=name)
    assert back.context.dtype == np.float32 and back.action.dtype == np.int64 and back.reward.dtype == np.float64
    assert back.n_actions == 7
    assert back.propensity_source == "estimated"
    assert len(back) == back.n_rounds == 50 and back.context_dim == 3


def test_round_trip_without_optional_fields(tmp_path):
    fb = LoggedFeedback(action=[0, 1], reward=[1.0, 0.0], pscore=[0.5, 0.5], n_actions=2)
    back = LoggedFeedback.from_parquet(fb.to_parquet(tmp_path / "min.parquet"))
    assert back.context is None and back.position is None and back.user is None
    assert back.propensity_source == "known" and back.n_actions == 2
    np.testing.assert_array_equal(back.action, [0, 1])


def test_file_layout_matches_the_documented_format(tmp_path):
    path = _full(n=5).to_parquet(tmp_path / "logs.parquet")
    schema = pq.read_schema(path)
    assert schema.names == ["action", "reward", "pscore", "position", "user", "ctx_0", "ctx_1", "ctx_2"]
    assert schema.field("action").type == pa.int64()
    assert schema.field("pscore").type == pa.float64()
    assert schema.field("ctx_0").type == pa.float32()
    assert schema.metadata[b"seqrec.n_actions"] == b"7"
    assert schema.metadata[b"seqrec.propensity_source"] == b"estimated"
    assert schema.metadata[b"seqrec.format_version"] == b"1"


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "logs.parquet"
    _full(n=10, seed=1).to_parquet(path)
    before = path.read_bytes()

    def broken_write(table, where, **kwargs):
        where.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(lf_module.pq, "write_table", broken_write)
    with pytest.raises(OSError, match="disk full"):
        _full(n=20, seed=2).to_parquet(path)
    assert path.read_bytes() == before  # the old file is untouched
    assert os.listdir(tmp_path) == ["logs.parquet"]  # and no temporary file is left


def test_overwrite_and_parent_creation(tmp_path):
    path = tmp_path / "a" / "b" / "logs.parquet"
    _full(n=10).to_parquet(path)
    _full(n=12, seed=5).to_parquet(path)
    assert LoggedFeedback.from_parquet(path).n_rounds == 12
    assert sorted(os.listdir(path.parent)) == ["logs.parquet"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # the usual file mode, not mkstemp's 0600


def test_bring_your_own_logs_with_pandas(tmp_path):
    # a user's frame: float action column (whole numbers), extra columns, no seqrec metadata
    df = pd.DataFrame(
        {
            "action": [0.0, 2.0, 1.0],
            "reward": [1, 0, 1],
            "pscore": [0.2, 0.3, 0.5],
            "ctx_0": [0.1, 0.2, 0.3],
            "ctx_1": [1.0, 2.0, 3.0],
            "session": ["a", "b", "c"],
        }
    )
    path = tmp_path / "mine.parquet"
    df.to_parquet(path)
    msg = _read_error(path)
    assert "n_actions=" in msg
    fb = LoggedFeedback.from_parquet(path, n_actions=3, propensity_source="estimated")
    np.testing.assert_array_equal(fb.action, [0, 2, 1])
    assert fb.action.dtype == np.int64 and fb.reward.dtype == np.float64
    assert fb.context.shape == (3, 2) and fb.context.dtype == np.float32


# ----------------------------------------------------------------------------------------
# Malformed files
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("column", ["action", "reward", "pscore"])
def test_missing_column(tmp_path, column):
    cols = _good_columns()
    del cols[column]
    msg = _read_error(_write(tmp_path / "f.parquet", cols))
    assert f"missing required column {column!r}" in msg


@pytest.mark.parametrize(
    "values, row",
    [([0.25, 0.5, 0.0, 0.1], 2), ([0.25, 1.5, 1.0, 0.1], 1), ([-0.1, 0.5, 1.0, 0.1], 0)],
)
def test_pscore_out_of_range(tmp_path, values, row):
    cols = _good_columns() | {"pscore": pa.array(values)}
    msg = _read_error(_write(tmp_path / "f.parquet", cols))
    assert "'pscore'" in msg and "(0, 1]" in msg and f"first bad row {row} is {values[row]!r}" in msg


@pytest.mark.parametrize("values, row", [([0, 1, 4, 2], 2), ([0, -1, 3, 2], 1)])
def test_action_out_of_range(tmp_path, values, row):
    cols = _good_columns() | {"action": pa.array(values, pa.int64())}
    msg = _read_error(_write(tmp_path / "f.parquet", cols))
    assert "'action'" in msg and "[0, 4)" in msg and f"first bad row {row}" in msg


def test_non_numeric_column(tmp_path):
    cols = _good_columns() | {"reward": pa.array(["1", "0", "1", "1"])}
    msg = _read_error(_write(tmp_path / "f.parquet", cols))
    assert "'reward'" in msg and "numeric" in msg and "string" in msg


def test_fractional_action(tmp_path):
    cols = _good_columns() | {"action": pa.array([0.0, 1.5, 3.0, 2.0])}
    msg = _read_error(_write(tmp_path / "f.parquet", cols))
    assert "'action'" in msg and "integers" in msg and "row 1" in msg


def test_null_and_nan_values(tmp_path):
    cols = _good_columns() | {"reward": pa.array([1.0, None, 0.5, 1.0])}
    assert "null" in _read_error(_write(tmp_path / "a.parquet", cols))
    cols = _good_columns() | {"reward": pa.array([1.0, 0.0, float("nan"), 1.0])}
    msg = _read_error(_write(tmp_path / "b.parquet", cols))
    assert "'reward'" in msg and "finite" in msg and "row 2" in msg


def test_corrupt_and_missing_files(tmp_path):
    bad = tmp_path / "corrupt.parquet"
    bad.write_bytes(b"this is not parquet at all" * 10)
    assert "cannot read as Parquet" in _read_error(bad)

    truncated = tmp_path / "truncated.parquet"
    _full().to_parquet(truncated)
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    assert "cannot read as Parquet" in _read_error(truncated)

    assert "file not found" in _read_error(tmp_path / "nope.parquet")
    assert "not a file" in _read_error(tmp_path)


def test_metadata_problems(tmp_path):
    path = _write(tmp_path / "a.parquet", _good_columns(), {**META, "seqrec.n_actions": "many"})
    assert "not an integer" in _read_error(path)
    path = _write(tmp_path / "b.parquet", _good_columns(), {**META, "seqrec.propensity_source": "guessed"})
    assert "propensity_source" in _read_error(path)
    path = _write(tmp_path / "c.parquet", _good_columns(), {**META, "seqrec.format_version": "9"})
    assert "format version '9'" in _read_error(path)
    path = _write(tmp_path / "d.parquet", _good_columns())
    assert "contradicts" in _read_error(path, n_actions=10)
    assert LoggedFeedback.from_parquet(path, n_actions=4).n_actions == 4
    path = _write(tmp_path / "e.parquet", _good_columns(), {"seqrec.n_actions": "4"})
    assert "propensity_source=" in _read_error(path)


def test_context_columns_must_be_contiguous(tmp_path):
    cols = _good_columns() | {"ctx_0": pa.array([0.0] * 4), "ctx_2": pa.array([0.0] * 4)}
    assert "missing ctx_1" in _read_error(_write(tmp_path / "f.parquet", cols))


# ----------------------------------------------------------------------------------------
# Constructor validation
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, words",
    [
        (dict(pscore=[0.5, 0.0]), ["pscore", "(0, 1]", "row 1"]),
        (dict(action=[0, 5]), ["action", "[0, 2)", "row 1"]),
        (dict(action=[0, 0.5]), ["action", "integers"]),
        (dict(reward=[1.0]), ["reward", "lengths must match"]),
        (dict(reward=[1.0, float("inf")]), ["reward", "finite"]),
        (dict(context=np.zeros(2)), ["context", "(n_rounds, d)"]),
        (dict(context=[[0.0], [float("nan")]]), ["context", "finite", "row 1"]),
        (dict(user=[0, -3]), ["user", ">= 0"]),
        (dict(n_actions=0), ["n_actions"]),
        (dict(propensity_source="guess"), ["propensity_source"]),
    ],
)
def test_constructor_names_the_bad_field(changes, words):
    kwargs = dict(action=[0, 1], reward=[1.0, 0.0], pscore=[0.5, 0.5], n_actions=2) | changes
    with pytest.raises(SeqrecError) as excinfo:
        LoggedFeedback(**kwargs)
    msg = str(excinfo.value)
    assert "\n" not in msg
    for word in words:
        assert word in msg, msg


def test_repr_is_short():
    assert repr(_full(n=5)) == (
        "LoggedFeedback(n_rounds=5, n_actions=7, context_dim=3, position=True, user=True, "
        "propensity_source='estimated')"
    )
