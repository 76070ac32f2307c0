"""Time budgets and epoch sizes: a large log's epochs are subsampled to fit, and the runs say so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seqrec.data.prepare import prepare_dataset
from seqrec.data.synth_config import SynthConfig
from seqrec.data.synthetic import write_synthetic
from seqrec.encoders.config import EncoderConfig, PretrainConfig
from seqrec.encoders.train import pretrain
from seqrec.infra.budget import BUDGET_EPOCHS, EpochBudget
from seqrec.infra.errors import SeqrecError
from seqrec.simulators.config import SimulatorConfig
from seqrec.simulators.simulator import fit_simulator


@pytest.fixture(scope="module")
def small_log(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("budget")
    data = write_synthetic(root / "data", SynthConfig(n_users=200, n_items=80, seed=5))
    return prepare_dataset(data, cache_dir=root / "cache")


def test_epoch_budget_sizes_epochs_from_the_probe() -> None:
    b = EpochBudget(n_examples=100_000, batch_size=100, max_seconds=40.0)
    assert b.limit == 100_000 and not b.subsampled and not b.probed
    b.probe(seconds=1.0, steps=10, overhead_s=2.0)  # 1 ms per example, 10 s per epoch minus 2 s of validation
    assert b.limit == int((40.0 / BUDGET_EPOCHS - 2.0) / 1e-3) and b.subsampled and b.steps() == 80
    slow = EpochBudget(n_examples=1000, batch_size=100, max_seconds=1.0)
    slow.probe(seconds=100.0, steps=1, overhead_s=0.0)
    assert slow.limit == 100  # never less than one full step
    free = EpochBudget(n_examples=500, batch_size=64, examples_per_epoch=128)
    assert free.probed and free.limit == 128 and free.steps() == 2 and not free.exhausted()
    assert free.to_dict() == {"max_seconds": None, "reserved_s": 0.0, "examples_per_epoch": 128, "n_examples": 500, "subsampled": True}
    kept = EpochBudget(n_examples=100_000, batch_size=100, max_seconds=40.0)
    kept.reserve(20.0)  # e.g. the final test evaluation
    kept.probe(seconds=1.0, steps=10, overhead_s=0.0)
    assert kept.limit == int((20.0 / BUDGET_EPOCHS) / 1e-3)


def _pretrain(seq, tmp_path: Path, **kw) -> dict:
    config = EncoderConfig(n_items=seq.n_items, dim=8, max_len=10, cnn_window=3, n_horizontal=2, n_vertical=1, gnn_len=10)
    train = PretrainConfig(batch_size=16, progress=False, tensorboard=False, **kw)
    return pretrain(seq, config, train, tmp_path)


def test_pretraining_draws_the_epoch_size_it_is_given(small_log, tmp_path: Path) -> None:
    full = _pretrain(small_log, tmp_path / "full", epochs=1)
    n = full["n_train_examples"]
    assert full["history"][0]["examples"] == n and not full["budget"]["subsampled"]
    capped = _pretrain(small_log, tmp_path / "capped", epochs=2, patience=2, examples_per_epoch=100)
    assert [r["examples"] for r in capped["history"]] == [100, 100] and capped["budget"]["subsampled"]


def test_a_time_budget_subsamples_pretraining_epochs(small_log, tmp_path: Path) -> None:
    m = _pretrain(small_log, tmp_path, epochs=50, patience=50, max_seconds=1.0)
    assert m["budget"]["subsampled"] and m["budget"]["max_seconds"] == 1.0
    assert m["history"][-1]["examples"] < m["n_train_examples"]
    assert m["epochs"] < 50  # stopped by the budget, with weights and metrics written
    assert json.loads((tmp_path / "metrics.json").read_text())["budget"] == m["budget"]


def test_the_step_that_spends_the_budget_ends_training(small_log, tmp_path: Path) -> None:
    m = _pretrain(small_log, tmp_path, epochs=5, max_seconds=1e-3)
    assert m["epochs"] == 1 and m["history"][0]["examples"] == 16  # one step, then validation, test and the checkpoint
    assert (tmp_path / "encoder.pt").exists()
    cfg = SimulatorConfig(epochs=5, dim=8, dim_search=(), batch_size=16, max_history=10, max_seconds=1e-3)
    assert fit_simulator(small_log, cfg).info["response"]["epochs_run"] == 1


def test_a_time_budget_subsamples_the_simulator_fit(small_log) -> None:
    cfg = SimulatorConfig(epochs=30, patience=30, dim=8, dim_search=(), batch_size=16, max_history=10, max_seconds=4.0)
    info = fit_simulator(small_log, cfg).info["response"]
    assert info["budget"]["subsampled"] and info["epochs_run"] < 30
    capped = fit_simulator(small_log, SimulatorConfig(epochs=1, dim=8, dim_search=(), max_history=10, examples_per_epoch=50)).info["response"]
    assert capped["budget"]["examples_per_epoch"] == 50 and capped["budget"]["n_examples"] > 50


@pytest.mark.parametrize("kw", [{"max_seconds": 0.0}, {"examples_per_epoch": 0}])
def test_bad_budgets_are_one_line_errors(kw: dict) -> None:
    with pytest.raises(SeqrecError, match=next(iter(kw))):
        PretrainConfig(**kw)
    with pytest.raises(SeqrecError, match=next(iter(kw))):
        SimulatorConfig(**kw)


def test_validation_scores_a_fixed_subset_of_a_large_split(small_log, tmp_path: Path) -> None:
    from seqrec.encoders.train import evaluate

    m = _pretrain(small_log, tmp_path, epochs=1, valid_max_targets=50)
    assert m["valid"]["n"] == 50 and m["test"]["n"] == len(small_log.positions("test")) > 50
    from seqrec.encoders.model import SequenceEncoder

    enc = SequenceEncoder.load(tmp_path / "encoder.pt")
    assert evaluate(enc, small_log, "valid", max_targets=50) == evaluate(enc, small_log, "valid", max_targets=50)
    assert evaluate(enc, small_log, "valid", max_targets=10**6)["n"] == len(small_log.positions("valid"))


def test_a_budget_plans_its_schedule_over_the_epochs_it_allows() -> None:
    b = EpochBudget(n_examples=10_000, batch_size=100, max_seconds=10.0)
    assert b.planned_epochs(20) == 20  # not probed yet: every epoch whole
    b.probe(seconds=2.0, steps=20, overhead_s=0.0)
    assert b.subsampled and b.planned_epochs(20) == BUDGET_EPOCHS and b.planned_epochs(2) == 2
    assert EpochBudget(n_examples=100, batch_size=10, examples_per_epoch=50).planned_epochs(20) == 20
