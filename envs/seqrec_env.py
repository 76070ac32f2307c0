"""``SeqRec-v0``: one simulated user session per episode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from seqrec.infra.errors import SeqrecError
from seqrec.envs.bundle import Bundle, load_bundle
from seqrec.envs.config import EnvConfig
from seqrec.envs.rng import derive, seed_keys
from seqrec.envs.session import BatchedSessions

Observation = np.ndarray | dict[str, np.ndarray]
"""A Box observation (embedding mode) or a Dict of arrays (ids mode, candidates mode)."""
Action = int | np.integer | np.ndarray
"""An item id, a candidate index, a slate (k,) of item ids or a query vector (d,)."""


class SeqRecEnv(gym.Env):
    """Recommend items to a simulated user whose behaviour was fitted from a logged dataset.

    ## Description
    Each episode is one user of the bundle's dataset, sampled uniformly at reset. The
    session starts from that user's logged history (up to the validation event by default).
    Each step the agent recommends an item (or a slate); the fitted user simulator decides
    whether the user clicks (and what follows: cart, purchase, a rating), the clicked item
    joins the history, recently consumed kinds of item tire the user (satiation), and after
    unrewarding steps the user grows likely to leave (exit model).

    ## Action Space
    | ``action_mode`` | space | meaning |
    |---|---|---|
    | ``item`` (default) | ``Discrete(n_items)`` | the recommended item id |
    | ``candidates`` | ``Discrete(K)`` | one of K items retrieved by the encoder this step |
    | ``slate`` | ``MultiDiscrete([n_items] * k)`` | a ranked slate; cascade click model |
    | ``continuous`` | ``Box(-1, 1, (d,))`` | a query; the item with the highest inner product is shown |

    ## Observation Space
    | ``obs_mode`` | space | content |
    |---|---|---|
    | ``embedding`` (default) | ``Box(d + 2)`` float32 | encoder state (d), misses / 5, step / max_steps |
    | ``ids`` | ``Dict`` | ``items`` (L,) history ids (-1 pad), ``behaviours`` (L,), ``mask`` (L,), ``session`` (2,) |

    In ``candidates`` mode the observation is a ``Dict`` that also holds ``candidates``
    (K, d), the retrieved items' embeddings.

    ## Rewards
    ``reward_weights["click"]`` (default 1.0) per click, plus the weight of the behaviour that
    followed the click (e.g. ``{"click": 1, "purchase": 5}``).

    How often a user clicks at all is learned from a log with impressions (shown, not
    clicked). A log without them (ratings, click streams) cannot identify it: there the
    simulator's P(click) of a random never-touched item averages the bundle's
    ``SimulatorConfig.base_click_rate`` (default 0.05; ``seqrec prepare --base-click-rate``),
    and the log sets how items rank around it. ``fidelity.json`` (``click_model.base_click_rate``)
    says which applies.

    ## Starting State
    A uniformly sampled logged user's history (last ``max_len`` events up to ``start``).

    ## Episode End
    - Termination: the simulated user leaves (exit model).
    - Truncation: ``max_episode_steps`` (default 50) steps, by the ``TimeLimit`` wrapper that
      ``gymnasium.make`` adds (the vector env truncates itself). Pass the same
      ``max_episode_steps`` to ``make`` to change both the limit and the step feature.

    ## Arguments
    | name | type | default |
    |---|---|---|
    | ``bundle`` | path or None | None: the synthetic default bundle (built once, cached) |
    | ``obs_mode`` | str | ``"embedding"`` |
    | ``action_mode`` | str | ``"item"`` |
    | ``n_candidates`` | int | 20 |
    | ``slate_size`` | int | 5 |
    | ``max_episode_steps`` | int | 50 |
    | ``reward_weights`` | dict | ``{"click": 1.0}`` |
    | ``start`` | str | ``"valid"`` |
    | ``mask_consumed`` | bool | True |
    | ``device`` | str | ``"cpu"`` (``"cuda"``: models and session tensors on the GPU; for the batched env) |
    | ``obs_backend`` | ``"numpy"`` or ``"torch"`` | ``"numpy"`` (``"torch"``: the batched env's observations as tensors on ``device``) |
    | ``render_mode`` | ``"ansi"`` or None | None |

    ## Example
    The default bundle (built on first use from the embedded synthetic log, then cached):

    >>> import gymnasium as gym, seqrec
    >>> env = gym.make("SeqRec-v0")
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, obs.dtype, sorted(info)
    ((66,), dtype('float32'), ['user'])
    >>> obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    >>> sorted(info)
    ['behaviour', 'behaviour_name', 'click_prob', 'clicked_item', 'item', 'user']
    >>> reward in (0.0, 1.0), bool(0.0 <= info["click_prob"] <= 1.0)
    (True, True)

    ## Version History
    - v0: initial version (``device`` and ``obs_backend`` added later, defaults unchanged).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, bundle: str | Path | Bundle | None = None, render_mode: str | None = None, **options: Any):
        self.config = EnvConfig(**options)
        if self.config.obs_backend != "numpy":
            raise SeqrecError("obs_backend='torch' is an option of the batched env (gymnasium.make_vec); the single env returns NumPy")
        if render_mode not in (None, "ansi"):
            raise SeqrecError(f"render_mode must be None or 'ansi', not {render_mode!r}")
        self.render_mode = render_mode
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.sessions = BatchedSessions(self.bundle, self.config, 1)
        self.observation_space = self.sessions.single_observation_space
        self.action_space = self.sessions.single_action_space
        self._base_key: np.ndarray | None = None
        self._episode = -1
        self._log: list[str] = []

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Observation, dict[str, Any]]:
        """Start a session of a uniformly drawn logged user; ``info["user"]`` is its index.

        The same ``seed`` gives the same user, the same draws and so, with the same actions,
        the same trajectory. ``options`` is accepted for Gymnasium's API and unused.
        """
        super().reset(seed=seed)
        if seed is not None:
            self._base_key, self._episode = seed_keys(seed, 1), -1
        elif self._base_key is None:
            self._base_key = seed_keys(int(self.np_random.integers(2**62)), 1)
        self._episode += 1
        self.sessions.reset_rows(np.array([0]), derive(self._base_key, self._episode))
        user = int(self.sessions.state.users[0])
        self._log = [f"user {self.bundle.seq.user_ids[user]} (index {user}), history of {int((self.sessions.state.history[0] >= 0).sum())} items"]
        return self._obs(), {"user": user}

    def _obs(self) -> Observation:
        obs = self.sessions.observation()
        return {k: v[0] for k, v in obs.items()} if isinstance(obs, dict) else obs[0]

    def step(self, action: Action) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        """Show ``action`` to the simulated user: ``(obs, reward, terminated, truncated, info)``.

        ``info``: ``item`` (the shown item id, or slate), ``clicked_item`` (-1: none),
        ``click_prob``, ``behaviour`` / ``behaviour_name`` (what followed a click), ``user``.
        An action outside the action space raises :class:`SeqrecError` naming it.
        """
        if self.sessions.state is None:
            raise SeqrecError("Call reset before using step method.")
        out = self.sessions.step(self._checked(action), checked=True)
        info = {k: v[0] for k, v in out.info.items()}
        info["behaviour_name"] = self._behaviour_name(int(info["behaviour"]))
        if self.render_mode == "ansi":
            self._log.append(self._describe(info, float(out.reward[0])))
        # Truncation is the TimeLimit wrapper's job (registered with max_episode_steps=50), as
        # in Gymnasium's own envs, so `gymnasium.make(..., max_episode_steps=N)` is honoured.
        return self._obs(), float(out.reward[0]), bool(out.terminated[0]), False, info

    def _checked(self, action: Action) -> np.ndarray:
        """``action`` as a batch of one, or a :class:`SeqrecError` naming it when it is outside the space."""
        space = self.action_space
        if isinstance(space, gym.spaces.Discrete) and isinstance(action, (int, np.integer)) and not isinstance(action, bool):
            if 0 <= action < space.n:  # the common case, without building a space sample
                return np.array([action], np.int64)
        elif space.contains(_as_space_value(action, space)):
            return np.asarray(action)[None]
        raise SeqrecError(f"{action!r} ({type(action)}) invalid for action space {space}")

    def _behaviour_name(self, b: int) -> str:
        return self.sessions.simulator.behaviour_names[b] if b >= 0 else "none"

    def _describe(self, info: dict, reward: float) -> str:
        ids = self.bundle.seq.item_ids
        shown = info["item"]
        shown_s = ", ".join(str(ids[i]) for i in np.atleast_1d(shown))
        what = f"clicked {ids[info['clicked_item']]} ({info['behaviour_name']})" if info["clicked_item"] >= 0 else "no click"
        return f"step {self.sessions.t[0]:>3}: shown [{shown_s}] p(click)={float(np.max(info['click_prob'])):.3f} -> {what}, reward {reward:g}"

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return "\n".join(self._log)
        return None

    def action_masks(self) -> np.ndarray:
        """Valid actions (for sb3-contrib MaskablePPO), shape of the flattened action space."""
        return self.sessions.action_masks()[0]


def _as_space_value(action, space):
    """Accept numpy scalars and 0-d arrays for Discrete spaces, as Gymnasium's envs do."""
    arr = np.asarray(action)
    if isinstance(space, gym.spaces.Discrete) and arr.shape == () and arr.dtype.kind in "iu":
        return np.int64(arr)
    return arr
