"""``SeqRecVectorEnv``: N simulated users stepped with one encoder and one simulator call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from seqrec.infra.errors import SeqrecError
from seqrec.envs.bundle import Bundle, load_bundle
from seqrec.envs.config import EnvConfig
from seqrec.envs.rng import derive, seed_keys
from seqrec.envs.session import BatchedSessions


class SeqRecVectorEnv(VectorEnv):
    """The batched form of :class:`~seqrec.envs.seqrec_env.SeqRecEnv` (same options).

    Sub-env ``i`` of ``reset(seed=s)`` behaves exactly like ``SeqRecEnv`` reset with seed
    ``s + i``. Finished sub-envs restart in the same step (``AutoresetMode.SAME_STEP``): the
    returned observation is the new episode's first, and ``info["final_obs"]`` /
    ``info["final_info"]`` hold the last one's.

    With ``device="cuda"`` the encoder, the simulator and every session tensor stay on the GPU
    between steps; observations are copied to NumPy for SB3 unless ``obs_backend="torch"``,
    which returns them as tensors on the device (``info["final_obs"]`` then holds tensors).
    Actions may be NumPy arrays or tensors (on any device).

    >>> import gymnasium as gym, seqrec
    >>> envs = gym.make_vec("SeqRec-v0", num_envs=64, vectorization_mode="vector_entry_point")  # doctest: +SKIP
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, num_envs: int = 1, bundle: str | Path | Bundle | None = None, **options: Any):
        options.pop("render_mode", None)
        self.config = EnvConfig(**options)
        self.num_envs = num_envs
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.sessions = BatchedSessions(self.bundle, self.config, num_envs)
        self.single_observation_space = self.sessions.single_observation_space
        self.single_action_space = self.sessions.single_action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._base = None
        self._episode = np.zeros(num_envs, np.int64)

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        super().reset(seed=seed if isinstance(seed, int) or seed is None else None)
        if seed is None:
            seed = int(self.np_random.integers(2**62))
        if isinstance(seed, int):
            self._base = seed_keys(seed, self.num_envs)
        else:
            if len(seed) != self.num_envs:
                raise SeqrecError(f"reset got {len(seed)} seeds for {self.num_envs} envs")
            self._base = np.concatenate([seed_keys(s, 1) for s in seed])
        self._episode[:] = 0
        self.sessions.reset_rows(np.arange(self.num_envs), derive(self._base, self._episode))
        return self._observation(), {"user": self.sessions.state.users.cpu().numpy().copy()}

    def step(self, actions):
        out = self.sessions.step(actions)
        info: dict[str, Any] = dict(out.info)
        done = np.flatnonzero(out.terminated | out.truncated)
        if len(done):
            final = self._observation()
            info["final_obs"] = _rows(final, done, self.num_envs)
            info["_final_obs"] = np.isin(np.arange(self.num_envs), done)
            info["final_info"] = {k: v for k, v in out.info.items()}
            info["_final_info"] = info["_final_obs"]
            self._episode[done] += 1
            self.sessions.reset_rows(done, derive(self._base[done], self._episode[done]))
        return self._observation(), out.reward, out.terminated, out.truncated, info

    def _observation(self):
        """The batched observation: NumPy arrays, or tensors on the device with ``obs_backend="torch"``."""
        if self.config.obs_backend == "torch":
            return self.sessions.observation_tensors()
        return self.sessions.observation()

    def action_masks(self) -> np.ndarray:
        return self.sessions.action_masks()


def _rows(obs, rows: np.ndarray, n: int) -> np.ndarray:
    """An object array of per-env final observations (None where the env did not finish)."""
    out = np.empty(n, dtype=object)
    for r in rows:  # only the finished rows: plumbing for the info dict, not the hot path
        out[r] = {k: _copy(v[r]) for k, v in obs.items()} if isinstance(obs, dict) else _copy(obs[r])
    return out


def _copy(x):
    """A copy of one row of an observation (NumPy or torch)."""
    return x.clone() if isinstance(x, torch.Tensor) else x.copy()
