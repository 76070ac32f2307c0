"""``seqrec pretrain`` and ``seqrec encoder evaluate`` on a tiny CSV log, and one slow ML-100K run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from seqrec.cli.encoder import app as encoder_app
from seqrec.cli.encoder import pretrain_command

sys.path.insert(0, str(Path(__file__).parent))
from test_encoders import write_pattern_log  # noqa: E402

ML100K = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"


def make_app() -> typer.Typer:
    """The two commands mounted as cli/main.py mounts them."""
    app = typer.Typer()
    app.command("pretrain")(pretrain_command)
    app.add_typer(encoder_app, name="encoder")
    return app


def test_pretrain_then_evaluate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEQREC_CACHE", str(tmp_path / "cache"))
    log = write_pattern_log(tmp_path / "log.csv")
    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(make_app(), ["pretrain", "--data", str(log), "--out", str(out), "--epochs", "2", "--max-len", "8",
                                        "--dim", "16", "--encoder", "cnn+gnn", "--fusion", "stacked", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout.strip().splitlines()[-1])
    metrics = json.loads((out / "metrics.json").read_text())
    assert printed["test"] == metrics["test"] and {"hr@10", "ndcg@10", "mrr@10", "hr@20", "ndcg@20"} <= set(metrics["test"])
    assert (out / "encoder.pt").exists() and any((out / "tb").iterdir())
    again = runner.invoke(make_app(), ["encoder", "evaluate", str(out / "encoder.pt"), "--data", str(log), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout.strip().splitlines()[-1]) == metrics["test"]


@pytest.mark.slow
def test_pretrain_ml100k_beats_popularity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not (ML100K / "u.data").exists():
        pytest.skip(f"MovieLens 100K not found at {ML100K}")
    from seqrec.data.prepare import prepare_dataset
    from seqrec.encoders.config import EncoderConfig, PretrainConfig
    from seqrec.encoders.train import pretrain

    monkeypatch.setenv("SEQREC_CACHE", str(tmp_path / "cache"))
    seq = prepare_dataset(ML100K)
    metrics = pretrain(seq, EncoderConfig(n_items=seq.n_items, encoder="cnn"), PretrainConfig(epochs=3, progress=False), tmp_path)
    assert metrics["test"]["ndcg@10"] > 0.03 and metrics["test"]["n"] == seq.n_users
