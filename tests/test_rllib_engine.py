"""seqrec train --engine rllib: RLlib PPO on the batched env; its run folder evaluates like an SB3 run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the Ray extra is not installed (pip install -e '.[ray]')")

from seqrec.agents.rllib_engine import RLlibConfig, check_rllib_config, train_rllib  # noqa: E402
from seqrec.agents.train import TrainConfig, load_agent  # noqa: E402
from seqrec.cli.main import main  # noqa: E402
from seqrec.infra.errors import CheckpointError, SeqrecError  # noqa: E402


def _cfg(bundle: Path, out: Path, **kw) -> TrainConfig:
    opts = {"algo": "ppo", "bundle": str(bundle), "timesteps": 512, "n_envs": 8, "n_steps": 16, "eval_freq": 256,
            "eval_episodes": 4, "checkpoint_freq": 256, "net_arch": [16], "out": str(out), **kw}  # fmt: skip
    return TrainConfig(**opts)


def test_what_the_rllib_engine_refuses(tiny_bundle: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(SeqrecError, match="--engine rllib trains ppo"):
        check_rllib_config(_cfg(tiny_bundle, tmp_path, algo="a2c"))
    with pytest.raises(SeqrecError, match="obs_mode 'embedding'"):
        check_rllib_config(_cfg(tiny_bundle, tmp_path, obs_mode="ids"))
    assert main(["train", "--engine", "jax", "--out", str(tmp_path / "x")]) == 2
    assert main(["train", "--address", "auto", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["seqrec: error: --engine must be sb3 or rllib, not 'jax'",
                   "seqrec: error: --address applies to --engine rllib (SB3 trains in this process)"]  # fmt: skip
    run = tmp_path / "empty"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"algo": "ppo", "bundle": str(tiny_bundle)}))
    (run / "engine.json").write_text(json.dumps({"engine": "rllib"}))
    with pytest.raises(CheckpointError, match="no trained RLlib policy"):
        load_agent(run)




@pytest.mark.slow
def test_rllib_item_mode_trains_and_its_run_folder_evaluates(local_ray, tiny_bundle: Path, tmp_path: Path) -> None:
    from seqrec.agents.evaluation import EvalConfig, evaluate_policy
    from seqrec.agents.policies import SB3Policy
    from seqrec.envs.bundle import load_bundle
    from seqrec.envs.vector_env import SeqRecVectorEnv

    cfg = _cfg(tiny_bundle, tmp_path / "rl-item", action_mode="item")
    run = train_rllib(cfg, RLlibConfig(num_env_runners=1), progress=False)
    engine = json.loads((run / "engine.json").read_text())
    assert engine["engine"] == "rllib" and engine["env_steps"] >= 512 and engine["env_steps_per_s_per_runner"] > 0
    curve = np.load(run / "evaluations.npz")
    assert list(curve["timesteps"]) == sorted(curve["timesteps"]) and curve["results"].shape[1] == 4
    model, saved = load_agent(run, which="final")
    bundle = load_bundle(tiny_bundle)
    agent = evaluate_policy(SB3Policy(model), bundle, saved.env_options(), EvalConfig(episodes=24, seed=3))
    assert agent["episodes"] == 24 and 0 <= agent["ctr"] <= 1
    # the action mask holds in sampling too: with one allowed action per user, that is the action
    env = SeqRecVectorEnv(num_envs=16, bundle=bundle, **saved.env_options())
    obs, _ = env.reset(seed=0)
    allowed = np.random.default_rng(0).integers(0, env.single_action_space.n, 16)
    mask = np.zeros((16, env.single_action_space.n), bool)
    mask[np.arange(16), allowed] = True
    np.testing.assert_array_equal(model.predict(obs, deterministic=False, action_masks=mask)[0], allowed)
    assert main(["evaluate", str(run), "--episodes", "8", "--baselines", "random", "--out", str(tmp_path / "ev")]) == 0
    table = json.loads((tmp_path / "ev" / "results.json").read_text())["tables"][0]
    assert table["env"]["action_mode"] == "item" and {r["policy"] for r in table["results"]} == {"ppo:rl-item", "random"}
    assert main(["ope", "run", str(run), "--baselines", "random", "--out", str(tmp_path / "ope")]) == 0
    assert "ppo:rl-item" in json.loads((tmp_path / "ope" / "ope.json").read_text())["estimates"]


@pytest.mark.slow
def test_rllib_candidates_mode_in_the_driver_and_resume(local_ray, tiny_bundle: Path, tmp_path: Path) -> None:
    from seqrec.agents.rllib_engine import latest_rllib_checkpoint

    run = tmp_path / "rl-cand"
    train_rllib(_cfg(tiny_bundle, run, action_mode="candidates"), RLlibConfig(num_env_runners=0), progress=False)
    first = latest_rllib_checkpoint(run)
    steps = int(first.name.split("_")[1])
    assert steps >= 512
    curve_before = np.load(run / "evaluations.npz")["timesteps"]
    train_rllib(_cfg(tiny_bundle, run, timesteps=steps + 256), RLlibConfig(num_env_runners=0), resume=True, progress=False)
    engine = json.loads((run / "engine.json").read_text())
    assert steps + 256 <= engine["env_steps"] < steps + 2 * 256 + 16  # continued from the checkpoint, not from 0
    curve = np.load(run / "evaluations.npz")["timesteps"]
    np.testing.assert_array_equal(curve[: len(curve_before)], curve_before)
    assert curve[-1] > steps
    assert main(["evaluate", str(run), "--episodes", "8", "--baselines", "none", "--out", str(tmp_path / "ev")]) == 0
    assert json.loads((tmp_path / "ev" / "results.json").read_text())["tables"][0]["env"]["action_mode"] == "candidates"
