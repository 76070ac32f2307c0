"""Policies behind one interface: baselines and trained SB3 agents.

A policy maps a batch of observations of a :class:`~seqrec.envs.vector_env.SeqRecVectorEnv`
to a batch of actions. Baselines read what they need from the env's batched sessions
(the history, the encoder's item embeddings, the simulator) — all batched tensor code.

========================= ==============================================================
``random``                a uniformly random item
``most-popular``          the most-logged train item the user has not consumed yet
``greedy``                the encoder's top-1 next-item prediction (supervised choice)
``linucb``                LinUCB on the state embedding (shared model on state ⊙ item)
``oracle``                the simulator's myopic best item (one-step upper bound)
========================= ==============================================================
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch

from seqrec.infra.errors import SeqrecError
from seqrec.envs.rng import derive, uniforms
from seqrec.envs.session import BatchedSessions

BASELINES = ("random", "most-popular", "greedy", "linucb", "oracle")


class Policy(ABC):
    """Chooses a batch of actions for the env's current sessions; the base of every policy here.

    Subclasses are dataclasses whose fields are their hyperparameters and ``name`` (the label
    in evaluation results); they implement :meth:`act` and, if they learn online, :meth:`update`.
    :func:`~seqrec.agents.evaluation.evaluate_policy` calls ``act`` then ``update`` once per
    env step for the whole batch of ``B`` users.
    """

    name: str
    """Label of the policy in evaluation results."""

    @abstractmethod
    def act(self, obs, sessions: BatchedSessions) -> np.ndarray:
        """The actions for the current step of every session.

        :param obs: the batched observation as the env returns it: an array ``(B, d + N_SESSION_FEATURES)``
            in ``embedding`` mode without candidates, else a dict of ``(B, ...)`` arrays
            (see :class:`~seqrec.envs.vector_env.SeqRecVectorEnv`).
        :param sessions: the env's :class:`~seqrec.envs.session.BatchedSessions` (histories,
            the encoder, the simulator, the config's action mode).
        :return: actions in the env's action mode: ``(B,)`` ints for ``item`` and
            ``candidates``, ``(B, k)`` item ids for ``slate`` (``k = slate_size``), ``(B, d)``
            floats for ``continuous``.
        """

    def update(self, sessions: BatchedSessions, actions: np.ndarray, reward: np.ndarray) -> None:
        """Learn from the step just taken; a no-op unless the policy learns online (LinUCB).

        Called after ``env.step(actions)`` with the ``actions`` from :meth:`act` and the
        step's ``reward`` ``(B,)``. ``sessions`` is the same object :meth:`act` saw, already
        stepped: clicked rows hold their new history and finished rows a new user, so a
        policy that needs the state it acted on keeps it from :meth:`act`.
        """


def _choose(scores: torch.Tensor, sessions: BatchedSessions, exclude_consumed: bool = True) -> np.ndarray:
    """The best of ``scores`` ``(B, n_items)`` as an action of the env's mode.

    ``item``: the top item; ``slate``: the top ``slate_size`` items, best first;
    ``candidates``: the index of the best-scored of this step's K candidates;
    ``continuous``: the top item's unit embedding (the query that retrieves it).
    """
    scores = scores.to(sessions.device)  # the env's tensors may live on a GPU; actions come back as NumPy
    if exclude_consumed:
        scores = scores.masked_fill(sessions.consumed(), float("-inf"))
    mode = sessions.config.action_mode
    if mode == "candidates":
        return torch.gather(scores, 1, sessions.candidates).argmax(dim=1).cpu().numpy()
    k = sessions.config.slate_size if mode == "slate" else 1
    items = torch.topk(scores, k, dim=1).indices
    if mode == "slate":
        return items.cpu().numpy()
    if mode == "continuous":
        return torch.nn.functional.normalize(sessions.item_emb[items[:, 0]], dim=1).cpu().numpy()
    return items[:, 0].cpu().numpy()


@dataclass
class RandomPolicy(Policy):
    """Uniformly random items: counter-based draws keyed by each user's episode and step, so a
    user meets the same random items whatever the batch size (``seed`` picks the stream)."""

    seed: int = 0
    name: str = "random"

    def act(self, obs, sessions: BatchedSessions) -> np.ndarray:
        u = uniforms(derive(sessions.keys, 0x5EED, self.seed), sessions.t, sessions.n_items)
        return _choose(torch.from_numpy(u), sessions, exclude_consumed=False)


@dataclass
class MostPopularPolicy(Policy):
    """The most-logged train items, skipping what the user already consumed."""

    name: str = "most-popular"

    def act(self, obs, sessions: BatchedSessions) -> np.ndarray:
        pop = torch.as_tensor(sessions.seq.item_popularity(("train",)), dtype=torch.float32)
        return _choose(pop.expand(sessions.n, -1), sessions)


@dataclass
class GreedyEncoderPolicy(Policy):
    """The pretrained encoder's top-1 next item (what a supervised recommender would show)."""

    name: str = "greedy"

    def act(self, obs, sessions: BatchedSessions) -> np.ndarray:
        with torch.inference_mode():
            scores = sessions.encoder.scores(sessions.emb)
        return _choose(scores.float(), sessions)


@dataclass
class OraclePolicy(Policy):
    """The simulator's myopic best item: highest click probability now (ignores the future)."""

    name: str = "oracle"

    def act(self, obs, sessions: BatchedSessions) -> np.ndarray:
        all_items = torch.arange(sessions.n_items, device=sessions.device).expand(sessions.n, -1)
        with torch.inference_mode():
            p = sessions.simulator.click_probability(sessions.state, all_items)
        return _choose(p.float(), sessions, exclude_consumed=False)


@dataclass
class LinUCBPolicy(Policy):
    """LinUCB (Li et al., 2010) with one shared linear model on ``z = [state ⊙ item, item]``.

    Expected reward of item a for state x: ``θᵀ z_a`` with ``z_a = [x ⊙ v_a, v_a]`` (v_a the
    encoder's item embedding, x the state, both unit-normalised; the second half lets the
    model learn item appeal independent of the user); UCB bonus ``alpha * sqrt(z_aᵀ A⁻¹ z_a)``.
    Shapes: ``A (2d, 2d)``, ``b (2d,)``; scoring is one (B, n_items, 2d) einsum per step.
    """

    alpha: float = 0.3
    ridge: float = 1.0
    name: str = "linucb"

    def __post_init__(self) -> None:
        self._A: torch.Tensor | None = None

    def _z(self, sessions: BatchedSessions, items: torch.Tensor | None = None) -> torch.Tensor:
        x = torch.nn.functional.normalize(sessions.emb, dim=1)[:, None, :]
        v = torch.nn.functional.normalize(sessions.item_emb, dim=1)
        v = v[None] if items is None else v[items][:, None, :]
        return torch.cat([x * v, v.expand(x.shape[0], -1, -1)], dim=-1)

    def act(self, obs, sessions: BatchedSessions) -> np.ndarray:
        d = 2 * sessions.dim
        if self._A is None:
            self._A, self._b = self.ridge * torch.eye(d, device=sessions.device), torch.zeros(d, device=sessions.device)
        A_inv = torch.linalg.inv(self._A)
        theta = A_inv @ self._b
        h = d // 2
        x = torch.nn.functional.normalize(sessions.emb, dim=1)  # (B, h)
        v = torch.nn.functional.normalize(sessions.item_emb, dim=1)  # (n, h)
        mean = (x * theta[:h]) @ v.T + (v @ theta[h:])[None]  # θᵀ z_a for every (user, item)
        # zᵀA⁻¹z with z = [x ⊙ v, v] is vᵀ C_x v, C_x = XPX + XQ + QᵀX + R (X = diag(x)): O(B·n·h²)
        P, Q, R = A_inv[:h, :h], A_inv[:h, h:], A_inv[h:, h:]
        C = x[:, :, None] * P * x[:, None, :] + x[:, :, None] * Q + Q.T[None] * x[:, None, :] + R  # (B, h, h)
        block = max(1, (1 << 24) // max(x.shape[0] * h, 1))  # (B, block, h) temporaries of at most 2^24 floats
        quad = torch.cat([torch.einsum("bnh,nh->bn", v[k:k + block] @ C, v[k:k + block]) for k in range(0, len(v), block)], dim=1)
        bonus = torch.sqrt(quad.clamp(min=0))  # (B, n)
        actions = _choose(mean + self.alpha * bonus, sessions)
        shown = sessions.recommended_items(actions).reshape(sessions.n, -1)[:, 0]
        self._acted = self._z(sessions, shown)[:, 0, :]  # (B, d): the state acted on, before the step changes it
        return actions

    def update(self, sessions: BatchedSessions, actions: np.ndarray, reward: np.ndarray) -> None:
        z = self._acted
        self._A += z.T @ z
        self._b += z.T @ torch.as_tensor(reward, dtype=torch.float32, device=z.device)


@dataclass
class SB3Policy(Policy):
    """A trained Stable-Baselines3 model (deterministic actions; masks when it takes them)."""

    model: object
    name: str = "agent"

    def act(self, obs, sessions: BatchedSessions) -> np.ndarray:
        kwargs = {}
        if "action_masks" in self.model.predict.__code__.co_varnames:  # sb3-contrib MaskablePPO
            kwargs["action_masks"] = sessions.action_masks()
        actions, _ = self.model.predict(obs, deterministic=True, **kwargs)
        return actions


def baseline_names(spec: str) -> list[str]:
    """The baselines a ``--baselines`` value names: ``all``, ``none`` or a comma-separated list."""
    return list(BASELINES) if spec == "all" else [] if spec == "none" else [b.strip() for b in spec.split(",") if b.strip()]


def make_baseline(name: str, seed: int = 0) -> Policy:
    """A baseline by name (see :data:`BASELINES`)."""
    makers = {"random": lambda: RandomPolicy(seed), "most-popular": MostPopularPolicy, "greedy": GreedyEncoderPolicy,
              "linucb": LinUCBPolicy, "oracle": OraclePolicy}  # fmt: skip
    if name not in makers:
        raise SeqrecError(f"unknown baseline {name!r}; expected one of {', '.join(BASELINES)}")
    return makers[name]()
