"""Agents: every algorithm trains and reloads; resume after a kill; evaluation is seeded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from seqrec.agents.evaluation import EvalConfig, evaluate_policy
from seqrec.agents.policies import BASELINES, Policy, SB3Policy, make_baseline
from seqrec.agents.train import ALGOS, TrainConfig, latest_checkpoint, load_agent, train
from seqrec.infra.errors import CheckpointError, SeqrecError
from seqrec.envs.bundle import load_bundle


@pytest.mark.parametrize("algo", ALGOS)
def test_every_algorithm_trains_saves_and_loads(tiny_bundle: Path, tmp_path: Path, algo: str) -> None:
    cfg = TrainConfig(algo=algo, bundle=str(tiny_bundle), timesteps=256, n_envs=8, out=str(tmp_path / algo), n_steps=16,
                      eval_freq=128, eval_episodes=4, checkpoint_freq=128, net_arch=[32])  # fmt: skip
    run = train(cfg, progress=False)
    model, saved = load_agent(run, which="final")
    assert saved.algo == algo and model.num_timesteps >= 256
    best, _ = load_agent(run)  # the best periodic-evaluation model
    assert best.num_timesteps <= model.num_timesteps
    assert (run / "config.json").exists() and (run / "evaluations.npz").exists()
    result = evaluate_policy(SB3Policy(model, name=algo), load_bundle(tiny_bundle), saved.env_options(), EvalConfig(episodes=8))
    assert result["episodes"] == 8 and 0.0 <= result["ctr"] <= 1.0


def test_evaluation_is_deterministic_under_a_seed(tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    for name in BASELINES:
        a = evaluate_policy(make_baseline(name, seed=1), bundle, {}, EvalConfig(episodes=40, seed=3, batch=16))
        b = evaluate_policy(make_baseline(name, seed=1), bundle, {}, EvalConfig(episodes=40, seed=3, batch=16))
        assert a == b, name
        if name != "linucb":  # LinUCB learns online, so what it knows depends on the batch order
            c = evaluate_policy(make_baseline(name, seed=1), bundle, {}, EvalConfig(episodes=40, seed=3, batch=40))
            assert a["returns"] == c["returns"], name  # batching does not change who meets what
    other = evaluate_policy(make_baseline("random", seed=1), bundle, {}, EvalConfig(episodes=40, seed=4))
    first = evaluate_policy(make_baseline("random", seed=1), bundle, {}, EvalConfig(episodes=40, seed=3))
    assert other["returns"] != first["returns"]


def test_encoder_initialised_policy_starts_as_greedy(tiny_bundle: Path, tmp_path: Path) -> None:
    from seqrec.agents.train import build_model, make_vec_env

    bundle = load_bundle(tiny_bundle)
    greedy = evaluate_policy(make_baseline("greedy"), bundle, {}, EvalConfig(episodes=48, seed=5))
    for init in ("encoder", "random"):
        cfg = TrainConfig(algo="maskable-ppo", bundle=str(tiny_bundle), n_envs=4, out=str(tmp_path / init), policy_init=init)
        model = build_model(cfg, make_vec_env(cfg, 4, 0), tmp_path / "tb")
        agent = evaluate_policy(SB3Policy(model), bundle, cfg.env_options(), EvalConfig(episodes=48, seed=5))
        # step 0: the warm-started agent recommends exactly what greedy does, every step of every episode
        assert (agent["returns"] == greedy["returns"] and agent["mean_length"] == greedy["mean_length"]) == (init == "encoder")
    with pytest.raises(SeqrecError, match="policy_init"):
        TrainConfig(algo="ppo", policy_init="pretrained")


def test_oracle_beats_random(tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    res = {n: evaluate_policy(make_baseline(n), bundle, {}, EvalConfig(episodes=200, seed=0)) for n in ("random", "oracle")}
    assert res["oracle"]["ctr"] > res["random"]["ctr"]
    assert res["random"]["coverage"] > res["oracle"]["coverage"]


def test_resume_after_kill_continues_from_checkpoint(tiny_bundle: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    conf = tmp_path / "conf.toml"
    conf.write_text(f'algo = "ppo"\nbundle = "{tiny_bundle}"\nn_envs = 8\nn_steps = 16\ncheckpoint_freq = 128\n'
                    f'eval_freq = 128\neval_episodes = 4\nnet_arch = [32]\nout = "{run}"\n')  # fmt: skip
    cmd = [sys.executable, "-m", "seqrec.cli.main", "train", "--config", str(conf), "--timesteps", "200000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.time() + 120
        while time.time() < deadline and (latest_checkpoint(run) is None or "384" not in latest_checkpoint(run).name):
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = int(latest_checkpoint(run).name.split("_")[1])
    assert killed_at >= 384 and not (run / "final_model.zip").exists()
    curve_before = np.load(run / "evaluations.npz")["timesteps"]
    target = killed_at + 256
    code = subprocess.run([*cmd[:-1], str(target), "--resume"], capture_output=True, text=True)
    assert code.returncode == 0, code.stderr
    model, cfg = load_agent(run, which="final")
    assert model.num_timesteps == target  # continued from the checkpoint: nothing lost, nothing repeated
    assert json.loads((run / "config.json").read_text())["timesteps"] == target
    curve = np.load(run / "evaluations.npz")["timesteps"]  # the learning curve goes on, it does not restart
    kept = curve_before[curve_before <= killed_at]
    np.testing.assert_array_equal(curve[: len(kept)], kept)
    assert len(kept) >= 2 and curve[-1] > killed_at
    assert not list(run.glob(".evaluations.partial*"))  # written beside, then renamed into place


def test_bad_training_options_and_corrupt_model(tiny_bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(SeqrecError, match="unknown algo"):
        TrainConfig(algo="ppo2")
    with pytest.raises(SeqrecError, match="sac needs action_mode continuous"):
        TrainConfig(algo="sac", action_mode="item")
    with pytest.raises(SeqrecError, match="unknown training option"):
        TrainConfig.from_sources(None, {"timestep": 5})
    run = tmp_path / "broken"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"algo": "ppo", "bundle": str(tiny_bundle)}))
    (run / "final_model.zip").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match="cannot load the trained model"):
        load_agent(run)


def test_linucb_learns_from_feedback(tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    policy = make_baseline("linucb")
    evaluate_policy(policy, bundle, {}, EvalConfig(episodes=50))
    assert np.abs(policy._b.numpy()).sum() > 0  # the model was updated with observed rewards


def test_checkpoint_killed_mid_write_leaves_the_old_file(tiny_bundle: Path, tmp_path: Path) -> None:
    from seqrec.agents.train import save_model_atomic

    cfg = TrainConfig(algo="ppo", bundle=str(tiny_bundle), timesteps=128, n_envs=8, out=str(tmp_path / "run"), n_steps=16,
                      eval_freq=64, eval_episodes=4, checkpoint_freq=64, net_arch=[32])  # fmt: skip
    run = train(cfg, progress=False)
    assert (run / "best_model.zip").exists() and latest_checkpoint(run).name == "model_128_steps.zip"
    model, _ = load_agent(run, which="final")
    before = (run / "final_model.zip").read_bytes()

    def dies_mid_write(fh) -> None:  # what a SIGKILL inside model.save looks like to the file
        fh.write(before[:100])
        raise KeyboardInterrupt

    model.save = dies_mid_write
    with pytest.raises(KeyboardInterrupt):
        save_model_atomic(model, run / "final_model.zip")
    assert (run / "final_model.zip").read_bytes() == before
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []  # no temp file left behind


def test_every_policy_is_a_policy_and_act_is_required() -> None:
    policies = [make_baseline(name) for name in BASELINES] + [SB3Policy(model=None)]
    assert all(isinstance(p, Policy) for p in policies)
    assert [p.name for p in policies[:-1]] == list(BASELINES)
    assert make_baseline("random", seed=7).seed == 7  # still dataclasses: fields are the hyperparameters
    assert policies[0].update(None, np.zeros(1), np.zeros(1)) is None  # the default update is a no-op

    class NoAct(Policy):
        name = "no-act"

    with pytest.raises(TypeError, match="abstract"):
        NoAct()


def test_a_damaged_learning_curve_is_dropped_with_a_warning(tmp_path: Path) -> None:
    from seqrec.agents.train import _restore_evaluations

    class Callback:  # what _restore_evaluations fills in
        evaluations_timesteps: list = []

    path = tmp_path / "evaluations.npz"
    np.savez(path, timesteps=np.array([128, 256, 384]), results=np.ones((3, 2)), ep_lengths=np.ones((3, 2)))
    whole = Callback()
    _restore_evaluations(whole, path, upto=256)
    assert whole.evaluations_timesteps == [128, 256] and whole.best_mean_reward == 1.0
    path.write_bytes(path.read_bytes()[:40])  # a kill mid-write
    cut = Callback()
    with pytest.warns(UserWarning, match="damaged learning curve"):
        _restore_evaluations(cut, path, upto=256)
    assert cut.evaluations_timesteps == []
