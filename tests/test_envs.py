"""SeqRec-v0: every mode passes both env checkers; seeds fix trajectories; bad actions fail clearly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import seqrec  # noqa: F401  (registers SeqRec-v0)
from seqrec.infra.errors import SeqrecError
from seqrec.envs.sb3_vec import SB3VecEnv
from seqrec.envs.seqrec_env import SeqRecEnv
from seqrec.envs.vector_env import SeqRecVectorEnv

MODES = [(o, a) for o in ("embedding", "ids") for a in ("item", "candidates", "slate", "continuous")]


@pytest.mark.parametrize(("obs_mode", "action_mode"), MODES)
def test_env_checkers_pass(tiny_bundle: Path, obs_mode: str, action_mode: str) -> None:
    env = SeqRecEnv(bundle=tiny_bundle, obs_mode=obs_mode, action_mode=action_mode, n_candidates=5, slate_size=3)
    check_env(env, skip_render_check=True)
    sb3_check_env(env, warn=False)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)


def _rollout(env, seed: int, steps: int, action_seed: int = 0):
    obs, info = env.reset(seed=seed)
    env.action_space.seed(action_seed)
    out = [(info["user"], None, None)]
    for _ in range(steps):
        obs, r, term, trunc, info = env.step(env.action_space.sample())
        out.append((int(info["item"]), r, float(info["click_prob"]), term, trunc, np.asarray(obs).round(5).tobytes()))
        if term or trunc:
            break
    return out


def test_same_seed_and_actions_same_trajectory(tiny_bundle: Path) -> None:
    a = _rollout(gym.make("SeqRec-v0", bundle=tiny_bundle), 11, 30)
    b = _rollout(gym.make("SeqRec-v0", bundle=tiny_bundle), 11, 30)
    c = _rollout(gym.make("SeqRec-v0", bundle=tiny_bundle), 12, 30)
    assert a == b
    assert a != c


def test_vector_env_matches_single_envs(tiny_bundle: Path) -> None:
    n, seed, steps = 6, 40, 8
    venv = gym.make_vec("SeqRec-v0", num_envs=n, vectorization_mode="vector_entry_point", bundle=tiny_bundle)
    obs, info = venv.reset(seed=seed)
    singles = [SeqRecEnv(bundle=tiny_bundle) for _ in range(n)]
    firsts = [e.reset(seed=seed + i) for i, e in enumerate(singles)]
    np.testing.assert_allclose(obs, np.stack([o for o, _ in firsts]), rtol=1e-5, atol=1e-6)
    assert info["user"].tolist() == [i["user"] for _, i in firsts]
    rng = np.random.default_rng(0)
    alive = np.ones(n, bool)
    for _ in range(steps):
        actions = rng.integers(0, venv.single_action_space.n, n)
        vobs, vr, vterm, vtrunc, vinfo = venv.step(actions)
        for i, env in enumerate(singles):
            if not alive[i]:
                continue
            o, r, term, trunc, inf = env.step(int(actions[i]))
            assert (r, term, inf["item"]) == (vr[i], vterm[i], vinfo["item"][i])
            assert inf["click_prob"] == pytest.approx(vinfo["click_prob"][i], rel=1e-5)
            if term:
                alive[i] = False
            else:
                np.testing.assert_allclose(vobs[i], o, rtol=1e-4, atol=1e-5)


def test_vector_autoreset_and_sb3_adapter(tiny_bundle: Path) -> None:
    venv = SeqRecVectorEnv(num_envs=8, bundle=tiny_bundle, max_episode_steps=5)
    sb3 = SB3VecEnv(venv)
    sb3.seed(1)
    obs = sb3.reset()
    dones_seen = 0
    for _ in range(12):
        obs, reward, done, infos = sb3.step(np.zeros(8, dtype=np.int64))
        assert obs.shape == (8, venv.single_observation_space.shape[0])
        for d, inf in zip(done, infos):
            if d:
                dones_seen += 1
                assert inf["terminal_observation"].shape == obs.shape[1:]
    assert dones_seen >= 8  # every env finished at least one 5-step episode
    assert venv.sessions.t.max() <= 5


def test_make_with_seqrec_prefix_needs_no_import(tiny_bundle: Path) -> None:
    code = f"import gymnasium as gym; env = gym.make('seqrec:SeqRec-v0', bundle={str(tiny_bundle)!r}); print(env.spec.max_episode_steps)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "50"


@pytest.mark.parametrize(
    ("action_mode", "action", "pattern"),
    [
        ("item", 10_000, "invalid"),
        ("item", -1, "invalid"),
        ("item", 1.5, "invalid"),
        ("item", "3", "invalid"),
        ("candidates", 7, "invalid"),
        ("slate", np.array([1, 2]), "invalid"),
        ("continuous", np.zeros(3, np.float32), "invalid"),
    ],
)
def test_bad_actions_raise_value_error(tiny_bundle: Path, action_mode: str, action, pattern: str) -> None:
    env = SeqRecEnv(bundle=tiny_bundle, action_mode=action_mode, n_candidates=5, slate_size=3)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=pattern):
        env.step(action)


def test_vector_env_rejects_out_of_range_items(tiny_bundle: Path) -> None:
    venv = SeqRecVectorEnv(num_envs=2, bundle=tiny_bundle)
    venv.reset(seed=0)
    with pytest.raises(SeqrecError, match="out of range"):
        venv.step(np.array([0, 10_000]))


def test_step_before_reset_and_bad_options(tiny_bundle: Path) -> None:
    env = SeqRecEnv(bundle=tiny_bundle)
    with pytest.raises(SeqrecError, match="Call reset before using step"):
        env.step(0)
    with pytest.raises(SeqrecError, match="action_mode must be"):
        SeqRecEnv(bundle=tiny_bundle, action_mode="carousel")
    with pytest.raises(SeqrecError, match="unknown behaviour"):
        SeqRecEnv(bundle=tiny_bundle, reward_weights={"click": 1, "purchse": 5})
    with pytest.raises(TypeError):
        SeqRecEnv(bundle=tiny_bundle, n_candidate=5)


def test_reward_weights_pay_behaviours(tiny_bundle: Path) -> None:
    plain = SeqRecVectorEnv(num_envs=64, bundle=tiny_bundle)
    rich = SeqRecVectorEnv(num_envs=64, bundle=tiny_bundle, reward_weights={"click": 1.0, "purchase": 10.0})
    acts = np.arange(64) % plain.single_action_space.n
    plain.reset(seed=5), rich.reset(seed=5)
    _, r1, *_, i1 = plain.step(acts)
    _, r2, *_, i2 = rich.step(acts)
    np.testing.assert_array_equal(r1, (i1["clicked_item"] >= 0).astype(float))
    purchase = plain.sessions.simulator.behaviour_names.index("purchase")
    np.testing.assert_array_equal(r2, r1 + 10.0 * (i2["behaviour"] == purchase))


def test_action_masks_exclude_consumed(tiny_bundle: Path) -> None:
    env = SeqRecEnv(bundle=tiny_bundle)
    env.reset(seed=2)
    mask = env.action_masks()
    hist = env.sessions.state.history[0]
    consumed = hist[hist >= 0].numpy()
    assert mask.shape == (env.action_space.n,) and mask.dtype == bool
    if len(consumed):
        assert not mask[consumed].any()
    assert mask.sum() == env.action_space.n - len(np.unique(consumed))


def test_render_ansi(tiny_bundle: Path) -> None:
    env = gym.make("SeqRec-v0", bundle=tiny_bundle, render_mode="ansi")
    env.reset(seed=0)
    env.step(0)
    text = env.render()
    assert text.splitlines()[0].startswith("user ") and "step   1: shown [" in text
