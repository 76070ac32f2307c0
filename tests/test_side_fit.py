"""The simulator fit beside encoder pretraining (``BuildConfig.parallel_fits``, :mod:`seqrec.envs.side_fit`)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from seqrec.encoders.config import PretrainConfig
from seqrec.encoders.model import SequenceEncoder
from seqrec.envs import side_fit
from seqrec.envs.bundle import BuildConfig, build_bundle
from seqrec.infra.errors import SeqrecError
from seqrec.simulators.config import SimulatorConfig
from seqrec.simulators.simulator import UserSimulator

CFG = BuildConfig(encoder={"dim": 16, "gnn_len": 20, "max_len": 20}, pretrain=PretrainConfig(epochs=2, tensorboard=False),
                  simulator=SimulatorConfig(epochs=2, dim=16, max_history=20), allow_weak_simulator=True)  # fmt: skip


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from seqrec.data.synth_config import SynthConfig
    from seqrec.data.synthetic import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("side-fit") / "data", SynthConfig(n_users=150, n_items=60, seed=5))


def test_side_by_side_build_gives_the_same_bundle(log, tmp_path):
    one = build_bundle(log, tmp_path / "sequential", replace(CFG, parallel_fits=False), progress=False)
    two = build_bundle(log, tmp_path / "parallel", replace(CFG, parallel_fits=True), progress=False)
    a, b = UserSimulator.load(one / "simulator.pt"), UserSimulator.load(two / "simulator.pt")
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.calibration == b.calibration and a.exit_model.to_dict() == b.exit_model.to_dict()
    ea, eb = SequenceEncoder.load(one / "encoder.pt"), SequenceEncoder.load(two / "encoder.pt")
    assert all(torch.equal(x, y) for x, y in zip(ea.state_dict().values(), eb.state_dict().values()))
    m1, m2 = (json.loads((p / "bundle.json").read_text()) for p in (one, two))
    assert m1["parallel_stages"] == [] and m2["parallel_stages"] == ["simulator fit"]
    assert set(m2["stage_seconds"]) == set(m1["stage_seconds"]) and m2["stage_seconds"]["simulator fit"] > 0
    assert json.loads((one / "fidelity.json").read_text())["click_model"] == json.loads((two / "fidelity.json").read_text())["click_model"]
    assert not (two / side_fit.ERROR_FILE).exists()


def test_auto_runs_side_by_side_only_where_it_pays(monkeypatch):
    monkeypatch.setattr(side_fit, "available_cores", lambda: 2)
    assert side_fit.parallel_fits(None, 100_000, 1)
    assert not side_fit.parallel_fits(None, 100_000, 2)  # two stages of two threads need four cores
    assert not side_fit.parallel_fits(None, side_fit.MIN_EVENTS - 1, 1)  # seconds either way: no second process
    assert not side_fit.parallel_fits(None, side_fit.MAX_EVENTS + 1, 1)  # memory: one large stage at a time
    assert side_fit.parallel_fits(True, 10, 4) and not side_fit.parallel_fits(False, 100_000, 1)
    monkeypatch.setattr(side_fit, "available_cores", lambda: 1)
    assert not side_fit.parallel_fits(None, 100_000, 1)


def test_a_failed_side_fit_is_a_one_line_error(tmp_path):
    fit = side_fit.start(tmp_path / "no-such-dataset", CFG.simulator, tmp_path, 1, progress=False)
    with pytest.raises(SeqrecError) as err:
        fit.wait()
    assert "\n" not in str(err.value) and "no-such-dataset" in str(err.value)
    assert not (tmp_path / "simulator.pt").exists()


def test_a_failed_pretraining_stops_the_side_fit_and_writes_nothing(log, tmp_path, monkeypatch):
    import seqrec.envs.bundle as bundle

    started = []
    real_start = side_fit.start
    monkeypatch.setattr(side_fit, "start", lambda *a, **k: started.append(real_start(*a, **k)) or started[-1])

    def failing_pretrain(*_args, **_kwargs):
        raise SeqrecError("pretraining failed")

    monkeypatch.setattr(bundle, "pretrain", failing_pretrain)
    with pytest.raises(SeqrecError, match="pretraining failed"):
        build_bundle(log, tmp_path / "out", replace(CFG, parallel_fits=True), progress=False)
    assert len(started) == 1 and started[0].process.poll() is not None  # the child was ended, not left running
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no bundle, no half-written temporary folder
