"""``--device``: CPU is the tested default; names are checked in one line; CUDA runs where present."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from seqrec.encoders.config import EncoderConfig, PretrainConfig
from seqrec.encoders.train import pretrain
from seqrec.infra.devices import resolve_device
from seqrec.infra.errors import SeqrecError
from seqrec.simulators.config import SimulatorConfig
from seqrec.simulators.simulator import fit_simulator

def needs_cuda(test):
    """Marked gpu, and skipped where torch sees no CUDA GPU."""
    return pytest.mark.gpu(pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")(test))


@pytest.fixture(scope="module")
def small_seq(tmp_path_factory: pytest.TempPathFactory):
    from seqrec.data.prepare import prepare_dataset
    from seqrec.data.synth_config import SynthConfig
    from seqrec.data.synthetic import write_synthetic

    root = tmp_path_factory.mktemp("devices")
    seq = prepare_dataset(write_synthetic(root / "data", SynthConfig(n_users=80, n_items=40, seed=9)), cache_dir=root / "cache")
    seq.meta["folder"] = str(root / "data")
    return seq


def test_device_names_resolve_or_fail_in_one_line() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("gpu", "cuda:x", ""):
        with pytest.raises(SeqrecError, match="auto | cpu | cuda"):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(SeqrecError, match="no CUDA GPU"):
            resolve_device("cuda")


def _fit_both(seq, tmp_path: Path, **device) -> tuple[dict, object]:
    enc = EncoderConfig(n_items=seq.n_items, dim=8, max_len=10, cnn_window=3, n_horizontal=2, n_vertical=1, gnn_len=10)
    metrics = pretrain(seq, enc, PretrainConfig(epochs=1, batch_size=64, precision="fp32", progress=False, tensorboard=False, **device), tmp_path)
    sim = fit_simulator(seq, SimulatorConfig(epochs=1, dim=8, dim_search=(), max_history=10, **device))
    return metrics, sim


def test_an_explicit_cpu_device_gives_the_default_run(small_seq, tmp_path: Path) -> None:
    default, sim_default = _fit_both(small_seq, tmp_path / "default")
    explicit, sim = _fit_both(small_seq, tmp_path / "cpu", device="cpu")
    assert explicit["device"] == default["device"] == "cpu" and explicit["test"] == default["test"]
    assert sim.device == torch.device("cpu")
    assert sim.info["response"]["valid_log_loss"] == sim_default.info["response"]["valid_log_loss"]


@needs_cuda
def test_cuda_training_matches_the_cpu_run_up_to_rounding(small_seq, tmp_path: Path) -> None:
    cpu, sim_cpu = _fit_both(small_seq, tmp_path / "cpu", device="cpu")
    gpu, sim_gpu = _fit_both(small_seq, tmp_path / "gpu", device="cuda")
    assert gpu["device"].startswith("cuda") and sim_gpu.device == torch.device("cpu")  # returned for the CPU
    assert abs(gpu["test"]["ndcg@10"] - cpu["test"]["ndcg@10"]) < 0.05
    assert abs(sim_gpu.info["response"]["valid_log_loss"] - sim_cpu.info["response"]["valid_log_loss"]) < 0.02


@pytest.mark.parametrize("command", [["pretrain", "--data"], ["simulator", "fit"], ["prepare"], ["train"]])
def test_every_training_command_checks_its_device_in_one_line(capsys, tmp_path: Path, small_seq, command: list[str]) -> None:
    from seqrec.cli.main import main

    data = [] if command == ["train"] else [small_seq.meta["folder"]]
    code = main([*command, *data, "--out", str(tmp_path / "out"), "--device", "gpu"])
    err = capsys.readouterr().err
    assert code != 0 and err.count("\n") == 1 and "auto | cpu | cuda" in err, err
    assert not (tmp_path / "out").exists()
