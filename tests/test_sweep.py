"""seqrec sweep on Ray Tune: specs, summaries, a local Ray and a two-node cluster on one machine."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the Ray extra is not installed (pip install -e '.[ray]')")

from seqrec.agents.ray_cluster import connect_ray, require_ray  # noqa: E402
from seqrec.agents.sweep import ATTEMPTS_FILE, SweepOptions, load_spec, run_sweep, summarize  # noqa: E402
from seqrec.infra.errors import SeqrecError  # noqa: E402

BASE = {"timesteps": 256, "n_envs": 8, "n_steps": 16, "eval_freq": 128, "eval_episodes": 4, "checkpoint_freq": 128, "net_arch": [16]}


def _spec(tmp_path: Path, bundle, grid=None, base=None, name="spec.json", **extra) -> Path:
    spec = {"base": {**BASE, "bundle": str(bundle), **(base or {})}, "grid": grid or {"algo": ["ppo"], "seed": [0, 1]},
            "evaluation": {"episodes": 8}, **extra}  # fmt: skip
    path = tmp_path / name.replace(".json", ".yaml")
    import yaml

    path.write_text(yaml.safe_dump(spec))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ without a Ray instance
def test_bad_specs_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(SeqrecError, match=r"spec\.yaml: unknown algo 'ppo2'"):
        load_spec(_spec(tmp_path, "b", grid={"algo": ["ppo", "ppo2"]}))
    with pytest.raises(SeqrecError, match="unknown training option.*n_step"):
        load_spec(_spec(tmp_path, "b", base={"n_step": 3}))
    with pytest.raises(SeqrecError, match="unknown field.*grids"):
        load_spec(_spec(tmp_path, "b", grids={"seed": [0]}))
    with pytest.raises(SeqrecError, match="grid.seed must be a non-empty list"):
        load_spec(_spec(tmp_path, "b", grid={"seed": 3}))
    with pytest.raises(SeqrecError, match="search.space.learning_rate"):
        load_spec(_spec(tmp_path, "b", search={"space": {"learning_rate": {"normal": [0, 1]}}}))
    with pytest.raises(SeqrecError, match="sac needs action_mode continuous"):
        load_spec(_spec(tmp_path, "b", grid={"algo": ["sac"], "action_mode": ["item"]}))
    spec = load_spec(_spec(tmp_path, "b", grid={"algo": ["ppo", "a2c"], "seed": [0, 1, 2]}))
    assert len(spec.points()) == 6 and spec.points()[0] == {"algo": "ppo", "seed": 0}


def test_summary_is_mean_and_t_interval_over_seeds() -> None:
    from seqrec.agents.sweep import SweepSpec

    trials = [{"params": {"algo": a, "seed": s}, "mean_return": r, "ctr": 0.1, "train_s": 1.0}
              for a, s, r in [("ppo", 0, 1.0), ("ppo", 1, 2.0), ("ppo", 2, 3.0), ("a2c", 0, 5.0)]]  # fmt: skip
    summary = summarize(SweepSpec(), trials)
    best, ppo = summary["configurations"]
    assert best["config"] == {"algo": "a2c"} and best["n"] == 1 and np.isnan(best["ci95"][0])
    assert ppo["mean_return"] == 2.0 and ppo["per_seed"] == {"0": 1.0, "1": 2.0, "2": 3.0}
    half = 4.302652729911275 * 1.0 / np.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    np.testing.assert_allclose(ppo["ci95"], [2.0 - half, 2.0 + half])


def test_unreachable_address_and_missing_extra(monkeypatch) -> None:
    if ray.is_initialized():
        ray.shutdown()
    t0 = time.perf_counter()
    with pytest.raises(SeqrecError, match=r"cannot reach a Ray cluster at 127\.0\.0\.1:\d+"):
        connect_ray(f"127.0.0.1:{_free_port()}")
    assert time.perf_counter() - t0 < 10
    with pytest.raises(SeqrecError, match="--address must be auto or HOST:PORT"):
        connect_ray("nowhere")
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(SeqrecError, match=r'pip install "seqrec\[ray\]"'):
        require_ray()


# ------------------------------------------------------------------ a local Ray


@pytest.mark.slow
def test_two_trial_sweep_evaluates_and_a_rerun_skips_it(local_ray, tiny_bundle: Path, tmp_path: Path, capsys) -> None:
    from seqrec.cli.main import main

    out = tmp_path / "sweep"
    summary = run_sweep(_spec(tmp_path, tiny_bundle), SweepOptions(out=str(out)), progress=False)
    runs = sorted((out / "runs").iterdir())
    assert [r.name for r in runs] == ["algo=ppo,seed=0", "algo=ppo,seed=1"]
    assert len(summary["trials"]) == 2 and summary["configurations"][0]["n"] == 2
    assert all(t["timesteps"] >= 256 for t in summary["trials"])
    assert (out / "summary.json").exists() and (out / "summary.png").exists()
    assert main(["evaluate", *map(str, runs), "--episodes", "8", "--baselines", "random", "--out", str(tmp_path / "ev")]) == 0
    table = json.loads((tmp_path / "ev" / "results.json").read_text())["tables"][0]["results"]
    assert {r["policy"] for r in table} == {"algo=ppo,seed=0", "algo=ppo,seed=1", "random"}
    stamps = [(r / "trial.json").stat().st_mtime_ns for r in runs]
    again = run_sweep(_spec(tmp_path, tiny_bundle), SweepOptions(out=str(out)), progress=False)
    assert [(r / "trial.json").stat().st_mtime_ns for r in runs] == stamps  # finished trials are not trained again
    assert again["configurations"][0]["per_seed"] == summary["configurations"][0]["per_seed"]
    with pytest.raises(SeqrecError, match="holds a sweep of another spec"):
        run_sweep(_spec(tmp_path, tiny_bundle, grid={"seed": [5]}), SweepOptions(out=str(out)), progress=False)


@pytest.mark.slow
def test_a_bundle_missing_on_the_workers_is_one_line(local_ray, tmp_path: Path) -> None:
    with pytest.raises(SeqrecError, match=r"bundle .*nowhere does not exist on the Ray node at"):
        run_sweep(_spec(tmp_path, tmp_path / "nowhere"), SweepOptions(out=str(tmp_path / "s")), progress=False)


@pytest.mark.slow
def test_a_killed_trial_resumes_from_its_checkpoint(local_ray, tiny_bundle: Path, tmp_path: Path) -> None:
    from seqrec.agents.train import latest_checkpoint, load_agent

    out, target = tmp_path / "sweep", 4096
    run = out / "runs" / "seed=0"
    killed: dict = {}

    def kill_after_first_checkpoint() -> None:
        deadline = time.time() + 240
        while time.time() < deadline:
            ckpt = latest_checkpoint(run) if run.exists() else None
            if ckpt is not None and (run / ATTEMPTS_FILE).exists():
                killed["pid"] = json.loads((run / ATTEMPTS_FILE).read_text().splitlines()[0])["pid"]
                killed["at"] = int(ckpt.name.split("_")[1])
                os.kill(killed["pid"], signal.SIGKILL)
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_after_first_checkpoint, daemon=True)
    watcher.start()
    summary = run_sweep(_spec(tmp_path, tiny_bundle, grid={"seed": [0]}, base={"timesteps": target}), SweepOptions(out=str(out)), progress=False)
    watcher.join(timeout=5)
    assert killed, "the trial finished before it could be killed"
    attempts = summary["trials"][0]["attempts"]
    assert len(attempts) == 2 and attempts[0]["pid"] == killed["pid"] != attempts[1]["pid"]
    assert attempts[1]["from_step"] >= killed["at"] > 0  # the retry resumed from the checkpoint, not from step 0
    model, _ = load_agent(run, which="final")
    assert model.num_timesteps == target == summary["trials"][0]["timesteps"]  # no step lost, none repeated


# ------------------------------------------------------------------ two nodes on one machine
@pytest.mark.slow
def test_two_trial_sweep_on_a_two_node_cluster(tiny_bundle: Path, tmp_path: Path) -> None:
    from ray.cluster_utils import Cluster

    from seqrec.cli.main import main

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    try:
        cluster.wait_for_nodes()
        out = tmp_path / "sweep"
        summary = run_sweep(_spec(tmp_path, tiny_bundle), SweepOptions(out=str(out), address=cluster.address), progress=False)
        nodes = {t["attempts"][-1]["node"] for t in summary["trials"]}
        assert len(summary["trials"]) == 2 and len(nodes) == 2  # one trial per 1-CPU node
        runs = sorted((out / "runs").iterdir())
        assert main(["evaluate", *map(str, runs), "--episodes", "8", "--baselines", "none", "--out", str(tmp_path / "ev")]) == 0
    finally:
        ray.shutdown()
        cluster.shutdown()
