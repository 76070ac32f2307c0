"""``NextStepVectorEnv``: the batched env as RLlib's env runners step it.

RLlib's ``SingleAgentEnvRunner`` expects Gymnasium's default ``AutoresetMode.NEXT_STEP``:
the step that ends an episode returns that episode's last observation, and the *next* step
returns the new episode's first observation (its action is ignored, reward 0). The
:class:`~seqrec.envs.vector_env.SeqRecVectorEnv` restarts a finished sub-env in the same
step, which an env runner would read as a lost first step of every episode. This subclass
keeps the batched engine (one encoder and one simulator call per step for all sub-envs) and
changes only when a finished row's new episode is shown; the rows that wait for their reset
are still simulated in that step (a batched call costs the same) and then put back where their
new episode starts, so every episode is the one ``SeqRecVectorEnv`` gives, seed for seed.

Observations follow RLlib's action-masking convention: a ``Dict`` of ``action_mask``
``(n_actions,)`` (1 = allowed, from :meth:`BatchedSessions.action_masks`) and ``observations``,
one flat ``Box``: the embedding state ``(d + 2,)``, with the candidates' embeddings ``(K * d,)``
appended in ``candidates`` mode. ``info`` is empty (RLlib copies it per sub-env every step).

>>> import gymnasium as gym, seqrec
>>> env = NextStepVectorEnv(num_envs=4, action_mode="candidates")  # doctest: +SKIP
>>> obs, _ = env.reset(seed=0)  # doctest: +SKIP
>>> obs["observations"].shape, obs["action_mask"].shape  # doctest: +SKIP
((4, 1346), (4, 20))
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from seqrec.envs.rng import derive
from seqrec.envs.vector_env import SeqRecVectorEnv
from seqrec.infra.errors import SeqrecError

RLLIB_ACTION_MODES = ("item", "candidates")


class NextStepVectorEnv(SeqRecVectorEnv):
    """:class:`SeqRecVectorEnv` with next-step autoreset and masked, flat observations (see the module docstring)."""

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, num_envs: int = 1, bundle=None, **options: Any):
        super().__init__(num_envs=num_envs, bundle=bundle, **options)
        if self.config.obs_mode != "embedding" or self.config.action_mode not in RLLIB_ACTION_MODES:
            raise SeqrecError(f"the RLlib env takes obs_mode 'embedding' and action_mode {' or '.join(RLLIB_ACTION_MODES)}, "
                              f"not {self.config.obs_mode!r} / {self.config.action_mode!r}")  # fmt: skip
        if self.config.obs_backend != "numpy":
            raise SeqrecError("the RLlib env returns NumPy observations (obs_backend 'numpy')")
        inner = self.single_observation_space
        width = sum(int(np.prod(s.shape)) for s in (inner.values() if isinstance(inner, spaces.Dict) else [inner]))
        n_actions = int(self.single_action_space.n)
        self.single_observation_space = spaces.Dict({
            "action_mask": spaces.Box(0.0, 1.0, (n_actions,), np.float32),
            "observations": spaces.Box(-np.inf, np.inf, (width,), np.float32),
        })  # fmt: skip
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self._pending = np.zeros(num_envs, bool)

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        super().reset(seed=seed, options=options)
        self._pending[:] = False
        return self._masked(), {}

    def step(self, actions):
        waiting = np.flatnonzero(self._pending)
        keys = self.sessions.keys[waiting].copy()  # the new episodes these rows start (reset last step)
        out = self.sessions.step(actions)
        if len(waiting):  # their step did not happen: back to their new episode's start, as in SeqRecVectorEnv
            self.sessions.reset_rows(waiting, keys)
            out.reward[waiting] = 0.0
            out.terminated[waiting] = out.truncated[waiting] = False
        obs = self._masked()  # finished rows show their last observation (next-step autoreset)
        done = np.flatnonzero(out.terminated | out.truncated)
        if len(done):
            self._episode[done] += 1
            self.sessions.reset_rows(done, derive(self._base[done], self._episode[done]))
        self._pending[:] = False
        self._pending[done] = True
        return obs, out.reward.astype(np.float32), out.terminated, out.truncated, {}

    def _masked(self) -> dict[str, np.ndarray]:
        """The batched observation ``{"action_mask": (B, n_actions), "observations": (B, width)}``."""
        return {"action_mask": self.sessions.action_masks().astype(np.float32), "observations": flat_observation(self.sessions.observation())}


def flat_observation(obs: np.ndarray | dict[str, np.ndarray]) -> np.ndarray:
    """A batched embedding-mode observation as one ``(B, width)`` float32 array: the state
    ``(B, d + 2)``, then in candidates mode the candidates' embeddings ``(B, K, d)`` row by row."""
    if isinstance(obs, dict):
        state = np.asarray(obs["state"])
        obs = np.concatenate([state, np.asarray(obs["candidates"]).reshape(len(state), -1)], axis=1)
    return np.asarray(obs, dtype=np.float32)


def make_rllib_env(config: dict[str, Any]) -> NextStepVectorEnv:
    """RLlib's env creator (``AlgorithmConfig.environment(env=make_rllib_env)``): RLlib calls it on
    every env runner with its ``env_config`` plus ``num_envs`` (the ``vector_entry_point``)."""
    options = {k: v for k, v in dict(config).items() if k != "num_envs"}
    return NextStepVectorEnv(num_envs=int(config.get("num_envs", 1)), **options)
