"""The RLlib form of the batched env: next-step autoreset, same episodes as SeqRecVectorEnv."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from seqrec.envs.bundle import load_bundle
from seqrec.envs.rllib_vec import NextStepVectorEnv, make_rllib_env
from seqrec.envs.vector_env import SeqRecVectorEnv
from seqrec.infra.errors import SeqrecError


def _batch_of_one(obs):
    return {k: v[None] for k, v in obs.items()} if isinstance(obs, dict) else obs[None]


def _flat(obs) -> np.ndarray:
    return np.concatenate([obs["state"], obs["candidates"].reshape(len(obs["state"]), -1)], 1) if isinstance(obs, dict) else obs


@pytest.mark.parametrize("mode", ["item", "candidates"])
def test_next_step_autoreset_gives_the_same_episodes(tiny_bundle: Path, mode: str) -> None:
    bundle, n = load_bundle(tiny_bundle), 6
    opts = {"action_mode": mode, "max_episode_steps": 5}
    same, nxt = SeqRecVectorEnv(num_envs=n, bundle=bundle, **opts), NextStepVectorEnv(num_envs=n, bundle=bundle, **opts)
    obs_s, _ = same.reset(seed=7)
    obs_n, _ = nxt.reset(seed=7)
    assert nxt.single_observation_space.contains({k: v[0] for k, v in obs_n.items()})
    np.testing.assert_allclose(obs_n["observations"], _flat(obs_s))
    np.testing.assert_array_equal(obs_n["action_mask"], same.action_masks())
    rng = np.random.default_rng(0)
    for _ in range(50):  # in step until the first episode ends
        a = rng.integers(0, same.single_action_space.n, n)
        obs_s, r_s, term, trunc, info = same.step(a)
        obs_n, r_n, term_n, trunc_n, _ = nxt.step(a)
        np.testing.assert_array_equal(r_n, r_s)
        np.testing.assert_array_equal(term_n | trunc_n, term | trunc)
        done = term | trunc
        if done.any():
            break
        np.testing.assert_allclose(obs_n["observations"], _flat(obs_s))
    assert done.any()
    for i in np.flatnonzero(done):  # the ended episode's last observation, where SeqRecVectorEnv puts it in final_obs
        np.testing.assert_allclose(obs_n["observations"][i], _flat(_batch_of_one(info["final_obs"][i]))[0])
    first = _flat(obs_s)[done]  # SeqRecVectorEnv already shows the new episodes' first observations
    obs_n, r_n, term_n, trunc_n, _ = nxt.step(rng.integers(0, same.single_action_space.n, n))
    np.testing.assert_allclose(obs_n["observations"][done], first)  # one step later, with reward 0 and no end
    assert (r_n[done] == 0).all() and not (term_n | trunc_n)[done].any()
    # episode by episode: the same actions in each episode give the same returns
    _compare_episodes(bundle, opts, n)


def _compare_episodes(bundle, opts: dict, n: int) -> None:
    """Each row's first three episodes, acted with action 0 throughout, have the same returns and lengths in both envs."""
    results = []
    for cls in (SeqRecVectorEnv, NextStepVectorEnv):
        env = cls(num_envs=n, bundle=bundle, **opts)
        env.reset(seed=11)
        eps, acc, length, waiting = [[] for _ in range(n)], np.zeros(n), np.zeros(n, int), np.zeros(n, bool)
        while min(len(e) for e in eps) < 3:
            _, r, term, trunc, _ = env.step(np.zeros(n, np.int64))
            live = ~waiting
            acc += r
            length += live
            done = term | trunc
            for i in np.flatnonzero(done):
                eps[i].append((round(float(acc[i]), 6), int(length[i])))
                acc[i], length[i] = 0, 0
            waiting = done if cls is NextStepVectorEnv else np.zeros(n, bool)
        results.append([e[:3] for e in eps])
    assert results[0] == results[1]
    assert any(length > 0 for row in results[0] for _, length in row)


def test_rllib_env_refuses_modes_it_cannot_mask(tiny_bundle: Path) -> None:
    with pytest.raises(SeqrecError, match="RLlib env takes"):
        NextStepVectorEnv(num_envs=2, bundle=str(tiny_bundle), action_mode="slate")
    with pytest.raises(SeqrecError, match="RLlib env takes"):
        NextStepVectorEnv(num_envs=2, bundle=str(tiny_bundle), obs_mode="ids")
    env = make_rllib_env({"num_envs": 3, "bundle": str(tiny_bundle), "action_mode": "item"})
    assert env.num_envs == 3 and env.single_observation_space["action_mask"].shape == (env.single_action_space.n,)
