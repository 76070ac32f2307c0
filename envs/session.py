"""Batched simulated sessions: the one engine behind ``SeqRecEnv`` and ``SeqRecVectorEnv``.

B user slots are simulated together: one encoder call (for the slots whose history
changed) and one simulator call per step, whatever B is. Every random draw of slot ``b``
is a pure function of its key, its episode count and its step (:mod:`seqrec.envs.rng`), so
a slot behaves the same alone (B = 1) as inside a batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from gymnasium import spaces

from seqrec.infra.errors import SeqrecError
from seqrec.envs.bundle import Bundle
from seqrec.envs.config import EnvConfig
from seqrec.envs.retrieval import InnerProductIndex
from seqrec.envs.rng import derive, uniforms

N_SESSION_FEATURES = 2  # misses / 5 and step / max_episode_steps, appended to the state


@dataclass
class StepOutput:
    """What one batched step returns (all arrays have B rows)."""

    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    info: dict[str, np.ndarray]


class BatchedSessions:
    """B simulated sessions over a bundle (see the module docstring).

    :param bundle: the loaded dataset, encoder and simulator.
    :param config: the env options.
    :param n: number of slots B.
    """

    def __init__(self, bundle: Bundle, config: EnvConfig, n: int):
        self.bundle, self.config, self.n = bundle, config, n
        self.encoder, self.simulator, self.seq = bundle.encoder, bundle.simulator, bundle.seq
        self.n_items = self.seq.n_items
        self.max_len = self.encoder.config.max_len
        self.dim = self.encoder.config.dim
        with torch.inference_mode():
            self.item_emb = self.encoder.item_embeddings().detach().float()
        if config.action_mode == "candidates" and config.n_candidates > self.n_items:
            raise SeqrecError(f"n_candidates {config.n_candidates} exceeds the catalogue's {self.n_items} items")
        self.index = InnerProductIndex(self.item_emb) if config.action_mode == "candidates" else None
        self.weights = self._reward_weights(config.reward_weights)
        self.keys = np.zeros(n, np.uint64)
        self.episode = np.zeros(n, np.int64)
        self.t = np.zeros(n, np.int64)
        self.state = None
        self.emb = torch.zeros(n, self.dim)
        self.candidates = torch.zeros(n, config.n_candidates, dtype=torch.long)
        self.single_observation_space = self._observation_space()
        self.single_action_space = self._action_space()

    # ------------------------------------------------------------------ spaces
    def _observation_space(self) -> spaces.Space:
        cfg, L = self.config, self.max_len
        if cfg.obs_mode == "embedding":
            base = {"state": spaces.Box(-np.inf, np.inf, (self.dim + N_SESSION_FEATURES,), np.float32)}
        else:
            nb = len(self.simulator.behaviour_names)
            base = {
                "items": spaces.Box(-1, self.n_items - 1, (L,), np.int64),
                "behaviours": spaces.Box(-1, max(nb - 1, 0), (L,), np.int64),
                "mask": spaces.Box(0, 1, (L,), np.int8),
                "session": spaces.Box(-np.inf, np.inf, (N_SESSION_FEATURES,), np.float32),
            }
        if cfg.action_mode == "candidates":
            base["candidates"] = spaces.Box(-np.inf, np.inf, (cfg.n_candidates, self.dim), np.float32)
        if cfg.obs_mode == "embedding" and len(base) == 1:
            return base["state"]
        return spaces.Dict(base)

    def _action_space(self) -> spaces.Space:
        cfg = self.config
        if cfg.action_mode == "item":
            return spaces.Discrete(self.n_items)
        if cfg.action_mode == "candidates":
            return spaces.Discrete(cfg.n_candidates)
        if cfg.action_mode == "slate":
            return spaces.MultiDiscrete(np.full(cfg.slate_size, self.n_items, dtype=np.int64))
        return spaces.Box(-1.0, 1.0, (self.dim,), np.float32)

    def _reward_weights(self, weights: dict[str, float]) -> tuple[float, torch.Tensor]:
        names = list(self.simulator.behaviour_names)
        unknown = sorted(set(weights) - {"click", *names})
        if unknown:
            raise SeqrecError(f"reward_weights: unknown behaviour(s) {unknown}; this dataset has click, {', '.join(names)}")
        # "click" is paid once through the click term, even where it is also a behaviour name
        per_behaviour = torch.tensor([float(weights.get(b, 0.0)) if b != "click" else 0.0 for b in names] + [0.0])  # last: none (-1)
        return float(weights.get("click", 0.0)), per_behaviour

    # ------------------------------------------------------------------ reset
    def reset_rows(self, rows: np.ndarray, keys: np.ndarray) -> None:
        """Start new episodes in ``rows`` with episode keys ``keys`` (one per row)."""
        rows = np.asarray(rows, np.int64)
        if len(rows) == 0:
            return
        self.keys[rows] = keys
        self.t[rows] = 0
        u = uniforms(keys, 0, 1)[:, 0]
        users = np.minimum((u * self.seq.n_users).astype(np.int64), self.seq.n_users - 1)
        hist, beh = self.seq.user_histories(users, self.simulator.max_history, upto=self.config.start)
        fresh = self.simulator.initial_state(torch.from_numpy(users), torch.from_numpy(hist), torch.from_numpy(beh.astype(np.int64)))
        if self.state is None:
            if len(rows) != self.n:
                raise SeqrecError("the first reset must start every slot")
            self.state = fresh
        else:
            self.state.replace_rows(torch.from_numpy(rows), fresh)
        self._refresh(rows)

    def start_from(self, users: np.ndarray, history: np.ndarray, behaviours: np.ndarray) -> None:
        """Put every slot at a given logged state (offline evaluation of policies on logs).

        :param users: (B,) user indices; ``history``/``behaviours``: (B, L) left-padded with -1.
        """
        if len(users) != self.n:
            raise SeqrecError(f"start_from got {len(users)} users for {self.n} slots")
        self.t[:] = 0
        self.state = self.simulator.initial_state(torch.as_tensor(users, dtype=torch.long), torch.as_tensor(history, dtype=torch.long),
                                                  torch.as_tensor(behaviours, dtype=torch.long))  # fmt: skip
        self._refresh(np.arange(self.n))

    def history(self, rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The last ``max_len`` (encoder) history items and behaviours of ``rows``, (n, max_len)."""
        items, beh = self.state.history, self.state.behaviours
        if rows is not None:
            items, beh = items[rows], beh[rows]
        L = items.shape[1]
        if L >= self.max_len:
            return items[:, L - self.max_len :], beh[:, L - self.max_len :]
        pad = torch.full((items.shape[0], self.max_len - L), -1, dtype=items.dtype)
        return torch.cat([pad, items], 1), torch.cat([pad, beh], 1)

    def _refresh(self, rows: np.ndarray) -> None:
        """Recompute the encoder state (and candidates) of ``rows``: one batched call."""
        if len(rows) == 0:
            return
        idx = torch.from_numpy(np.asarray(rows, np.int64))
        if self.config.obs_mode == "embedding" or self.index is not None:
            with torch.inference_mode():
                emb = self.encoder(*self.history(idx)).float()
            self.emb[idx] = emb
            if self.index is not None:
                self.candidates[idx] = self.index.search(emb, self.config.n_candidates)

    # ------------------------------------------------------------------ observe
    def session_features(self) -> np.ndarray:
        """(B, 2): consecutive unrewarded steps / 5 and the step fraction."""
        misses = self.state.misses.numpy().astype(np.float32)
        return np.stack([misses / 5.0, self.t.astype(np.float32) / self.config.max_episode_steps], axis=1)

    def observation(self) -> np.ndarray | dict[str, np.ndarray]:
        """The batched observation, matching ``batch_space(single_observation_space, B)``."""
        cfg = self.config
        feats = self.session_features()
        if cfg.obs_mode == "embedding":
            obs: dict[str, np.ndarray] = {"state": np.concatenate([self.emb.numpy(), feats], axis=1).astype(np.float32)}
        else:
            hist, beh = self.history()
            items = hist.numpy().astype(np.int64)
            obs = {"items": items, "behaviours": beh.numpy().astype(np.int64),
                   "mask": (items >= 0).astype(np.int8), "session": feats}  # fmt: skip
        if cfg.action_mode == "candidates":
            obs["candidates"] = self.item_emb[self.candidates].numpy()
        if isinstance(self.single_observation_space, spaces.Box):
            return obs["state"]
        return obs

    # ------------------------------------------------------------------ act
    def recommended_items(self, actions: np.ndarray) -> torch.Tensor:
        """Map a batch of actions to item ids: (B,) or (B, slate_size) for slates."""
        mode = self.config.action_mode
        a = np.asarray(actions)
        if mode == "continuous":
            q = torch.as_tensor(a, dtype=torch.float32).reshape(self.n, self.dim)
            return torch.argmax(q @ self.item_emb.T, dim=1)
        if a.dtype.kind not in "iu" and not (a.dtype.kind == "f" and np.all(a == np.floor(a))):
            raise SeqrecError(f"{mode} actions must be integers, got {a.dtype}")
        a = torch.as_tensor(a.astype(np.int64))
        if mode == "candidates":
            if a.min() < 0 or a.max() >= self.config.n_candidates:
                raise SeqrecError(f"candidate index out of range [0, {self.config.n_candidates}): {a.min().item()}..{a.max().item()}")
            return torch.gather(self.candidates, 1, a.reshape(self.n, 1)).squeeze(1)
        if a.min() < 0 or a.max() >= self.n_items:
            raise SeqrecError(f"item id out of range [0, {self.n_items}): {a.min().item()}..{a.max().item()}")
        return a.reshape(self.n, self.config.slate_size) if mode == "slate" else a.reshape(self.n)

    def step(self, actions: np.ndarray) -> StepOutput:
        """Advance every slot by one step (the caller handles autoreset)."""
        if self.state is None:
            raise SeqrecError("Call reset before using step method.")
        items = self.recommended_items(actions)
        self.t += 1
        width = items.shape[1] if items.dim() == 2 else 1
        noise = torch.from_numpy(uniforms(derive(self.keys, 1), self.t, width + 2).astype(np.float32))
        result = self.simulator.step(self.state, items, noise=noise)
        self.state = result.state
        clicks = result.clicks.float()
        beh = result.behaviours.long()
        reward = self.weights[0] * clicks + self.weights[1][torch.where(beh >= 0, beh, -1)] * clicks
        changed = np.flatnonzero(clicks.numpy() > 0)
        self._refresh(changed)
        terminated = result.left.numpy().astype(bool)
        truncated = (self.t >= self.config.max_episode_steps) & ~terminated
        info = {
            "item": items.numpy(),
            "clicked_item": result.clicked_item.numpy(),
            "click_prob": result.click_prob.numpy(),
            "behaviour": beh.numpy(),
            "user": self.state.users.numpy().copy(),
        }
        return StepOutput(reward.numpy().astype(np.float64), terminated, truncated, info)

    def consumed(self) -> torch.Tensor:
        """(B, n_items) bool: the items in each slot's (simulated) history."""
        hist = self.state.history.clone()
        hist[hist < 0] = self.n_items
        mask = torch.zeros(self.n, self.n_items + 1, dtype=torch.bool)
        return mask.scatter_(1, hist, True)[:, : self.n_items]

    def action_masks(self) -> np.ndarray:
        """Valid actions per slot: (B, n_items), (B, K) or (B, slate_size * n_items)."""
        mode = self.config.action_mode
        if mode == "continuous":
            raise SeqrecError("action masks are not defined for the continuous action mode")
        free = ~self.consumed() if self.config.mask_consumed else torch.ones(self.n, self.n_items, dtype=torch.bool)
        if mode == "candidates":
            free = torch.gather(free, 1, self.candidates)
        elif mode == "slate":
            free = free.repeat(1, self.config.slate_size)
        free[~free.any(dim=1)] = True  # never mask everything: a slot with no fresh choice may repeat one
        return free.numpy()
