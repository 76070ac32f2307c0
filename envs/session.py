"""Batched simulated sessions: the one engine behind ``SeqRecEnv`` and ``SeqRecVectorEnv``.

B user slots are simulated together: one encoder call (for the slots whose history
changed) and one simulator call per step, whatever B is. Every random draw of slot ``b``
is a pure function of its key, its episode count and its step (:mod:`seqrec.envs.rng`), so
a slot behaves the same alone (B = 1) as inside a batch.

Fast path: a user's starting state (simulator state, encoder state, candidates) is computed
on its first episode and gathered afterwards (:class:`~seqrec.envs.starts.StartCache`); a
slot is re-encoded only when its history changed (a click), with the encoder's dense
inference path (:meth:`~seqrec.encoders.model.SequenceEncoder.infer`); actions are checked
once, in NumPy, and the simulator is then called without re-checking them; ``step`` and
``reset_rows`` run in ``torch.inference_mode`` (a sixth less per-op overhead at B = 1). Tensors
live on ``EnvConfig.device``; only the step's outputs are copied to NumPy.

So :attr:`BatchedSessions.state`'s tensors are inference tensors: read them freely, but clone
one before writing into it outside the env (``state.history = state.history.clone()``).
Observations (:meth:`BatchedSessions.observation_tensors` too) are ordinary tensors.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from seqrec.infra.devices import resolve_device
from seqrec.infra.errors import SeqrecError
from seqrec.infra.traced import TracedByShape
from seqrec.envs.bundle import Bundle
from seqrec.envs.config import EnvConfig
from seqrec.envs.retrieval import InnerProductIndex
from seqrec.envs.rng import derive, uniforms
from seqrec.envs.starts import PREFILL_USERS, Start, StartCache
from seqrec.encoders.traced import EncoderInference

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
        self.device = resolve_device(config.device)
        self.encoder, self.simulator = _on_device(bundle.encoder, self.device), _on_device(bundle.simulator, self.device)
        self.seq = bundle.seq
        self.n_items = self.seq.n_items
        self.max_len = self.encoder.config.max_len
        self.dim = self.encoder.config.dim
        with torch.inference_mode():
            self.item_emb = self.encoder.item_embeddings().detach().float()
            self._item_table = self.encoder._item_table().detach() if self.encoder.config.n_item_features else None
        self._one_row = TracedByShape(EncoderInference(self.encoder, self._item_table))  # one click's re-encoding, traced
        if config.action_mode == "candidates" and config.n_candidates > self.n_items:
            raise SeqrecError(f"n_candidates {config.n_candidates} exceeds the catalogue's {self.n_items} items")
        self.index = InnerProductIndex(self.item_emb) if config.action_mode == "candidates" else None
        self.weights = self._reward_weights(config.reward_weights)
        self.keys = np.zeros(n, np.uint64)
        self.step_keys = np.zeros(n, np.uint64)  # derive(keys, 1): the per-step draws' key of each episode
        self.episode = np.zeros(n, np.int64)
        self.t = np.zeros(n, np.int64)
        self.state = None
        self.emb = torch.zeros(n, self.dim, device=self.device)
        self.candidates = torch.zeros(n, config.n_candidates, dtype=torch.long, device=self.device)
        self.starts = StartCache(self._compute_starts, self.seq.n_users)
        if self.seq.n_users <= PREFILL_USERS:
            with torch.inference_mode():
                self.starts.prefill()
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
        per_behaviour = torch.tensor([float(weights.get(b, 0.0)) if b != "click" else 0.0 for b in names] + [0.0],  # last: none (-1)
                                     device=self.device)
        return float(weights.get("click", 0.0)), per_behaviour

    # ------------------------------------------------------------------ reset
    @torch.inference_mode()
    def reset_rows(self, rows: np.ndarray, keys: np.ndarray) -> None:
        """Start new episodes in ``rows`` with episode keys ``keys`` (one per row)."""
        rows = np.asarray(rows, np.int64)
        if len(rows) == 0:
            return
        self.keys[rows] = keys
        self.step_keys[rows] = derive(keys, 1)
        self.t[rows] = 0
        u = uniforms(keys, 0, 1)[:, 0]
        users = np.minimum((u * self.seq.n_users).astype(np.int64), self.seq.n_users - 1)
        fresh, emb, cand = self.starts.get(users)
        if self.state is None:
            if len(rows) != self.n:
                raise SeqrecError("the first reset must start every slot")
            self.state = fresh
        else:
            self.state.replace_rows(torch.from_numpy(rows), fresh)
        idx = torch.from_numpy(rows).to(self.device)
        self.emb[idx] = emb
        if self.index is not None:
            self.candidates[idx] = cand

    def _compute_starts(self, users: np.ndarray) -> Start:
        """The starting states of ``users`` (n,) from their logged histories: one batched call each."""
        hist, beh = self.seq.user_histories(users, self.simulator.max_history, upto=self.config.start)
        state = self.simulator.initial_state(torch.from_numpy(users), torch.from_numpy(hist), torch.from_numpy(beh.astype(np.int64)))
        emb, cand = self._encode(state)
        return state, emb, cand

    def start_from(self, users: np.ndarray, history: np.ndarray, behaviours: np.ndarray) -> None:
        """Put every slot at a given logged state (offline evaluation of policies on logs).

        :param users: (B,) user indices; ``history``/``behaviours``: (B, L) left-padded with -1.
        """
        if len(users) != self.n:
            raise SeqrecError(f"start_from got {len(users)} users for {self.n} slots")
        self.t[:] = 0
        self.step_keys[:] = derive(self.keys, 1)
        self.state = self.simulator.initial_state(torch.as_tensor(users, dtype=torch.long), torch.as_tensor(history, dtype=torch.long),
                                                  torch.as_tensor(behaviours, dtype=torch.long))  # fmt: skip
        self._refresh(np.arange(self.n))

    def history(self, rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The last ``max_len`` (encoder) history items and behaviours of ``rows``, (n, max_len)."""
        return self._window(self.state.history, self.state.behaviours, rows)

    def _window(self, items: Tensor, beh: Tensor, rows: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The encoder's ``max_len`` columns of simulator histories ``(B, L)`` (of ``rows``)."""
        if rows is not None:
            items, beh = items[rows], beh[rows]
        L = items.shape[1]
        if L >= self.max_len:
            return items[:, L - self.max_len :], beh[:, L - self.max_len :]
        pad = torch.full((items.shape[0], self.max_len - L), -1, dtype=items.dtype, device=items.device)
        return torch.cat([pad, items], 1), torch.cat([pad, beh], 1)

    def _encode(self, state, rows: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Encoder state (n, d) and candidates (n, K) — (n, 0) outside candidates mode — of ``rows``
        of ``state``; the encoder runs only where the observation or the candidates need it."""
        n = state.batch_size if rows is None else rows.shape[0]
        emb = self.emb.new_zeros(n, self.dim)
        if self.config.obs_mode == "embedding" or self.index is not None:
            window = self._window(state.history, state.behaviours, rows)
            emb = (self._one_row(*window) if n == 1 else self.encoder.infer(*window, item_table=self._item_table)).float()
        if self.index is None:
            return emb, self.candidates.new_zeros(n, 0)
        return emb, self.index.search(emb, self.config.n_candidates)

    def _refresh(self, rows: np.ndarray) -> None:
        """Recompute the encoder state (and candidates) of ``rows``: one batched call."""
        if len(rows) == 0:
            return
        idx = torch.from_numpy(np.asarray(rows, np.int64)).to(self.device)
        emb, cand = self._encode(self.state, idx)
        self.emb[idx] = emb
        if self.index is not None:
            self.candidates[idx] = cand

    # ------------------------------------------------------------------ observe
    def session_features(self) -> np.ndarray:
        """(B, 2): consecutive unrewarded steps / 5 and the step fraction."""
        return self._session_features().cpu().numpy()

    def _session_features(self) -> Tensor:
        """:meth:`session_features` as a float32 tensor on the device."""
        t = torch.from_numpy(self.t).to(self.device, torch.float32)
        return torch.stack([self.state.misses.to(torch.float32) / 5.0, t / self.config.max_episode_steps], dim=1)

    def observation(self) -> np.ndarray | dict[str, np.ndarray]:
        """The batched observation, matching ``batch_space(single_observation_space, B)``."""
        if isinstance(self.single_observation_space, spaces.Box) and self.device.type == "cpu":
            return self._state_observation()
        obs = self.observation_tensors()
        if isinstance(obs, dict):
            return {k: v.cpu().numpy() for k, v in obs.items()}
        return obs.cpu().numpy()

    def _state_observation(self) -> np.ndarray:
        """The embedding observation ``(B, dim + 2)`` of a CPU env, assembled in NumPy: the same
        float32 values as :meth:`observation_tensors` gives, without its half-dozen tensor
        operations (a sixth of a single env's step otherwise)."""
        obs = np.empty((self.n, self.dim + N_SESSION_FEATURES), np.float32)
        obs[:, : self.dim] = self.emb.numpy()
        obs[:, self.dim] = self.state.misses.numpy().astype(np.float32) / np.float32(5.0)
        obs[:, self.dim + 1] = self.t.astype(np.float32) / np.float32(self.config.max_episode_steps)
        return obs

    def observation_tensors(self) -> Tensor | dict[str, Tensor]:
        """:meth:`observation` as fresh torch tensors on the device (no copy to the host)."""
        cfg = self.config
        feats = self._session_features()
        if cfg.obs_mode == "embedding":
            obs: dict[str, Tensor] = {"state": torch.cat([self.emb, feats], dim=1)}
        else:
            hist, beh = self.history()
            obs = {"items": hist.clone(), "behaviours": beh.clone(), "mask": (hist >= 0).to(torch.int8), "session": feats}
        if cfg.action_mode == "candidates":
            obs["candidates"] = self.item_emb[self.candidates]
        if isinstance(self.single_observation_space, spaces.Box):
            return obs["state"]
        return obs

    # ------------------------------------------------------------------ act
    def recommended_items(self, actions: np.ndarray | Tensor) -> torch.Tensor:
        """Map a batch of actions to item ids: (B,) or (B, slate_size) for slates (on the device).

        :raises SeqrecError: (one line, naming the values) non-integer or out-of-range actions.
        """
        mode = self.config.action_mode
        if mode == "continuous":
            q = torch.as_tensor(actions, dtype=torch.float32, device=self.device).reshape(self.n, self.dim)
            return torch.argmax(q @ self.item_emb.T, dim=1)
        a = self._integer_actions(actions, self.config.n_candidates if mode == "candidates" else self.n_items)
        if mode == "candidates":
            return torch.gather(self.candidates, 1, a.reshape(self.n, 1)).squeeze(1)
        return a.reshape(self.n, self.config.slate_size) if mode == "slate" else a.reshape(self.n)

    def _integer_actions(self, actions: np.ndarray | Tensor, high: int) -> Tensor:
        """Integer actions checked against ``[0, high)`` (in NumPy for host arrays), as a long tensor on the device."""
        what = "candidate index" if self.config.action_mode == "candidates" else "item id"
        if isinstance(actions, Tensor):
            integral = not actions.dtype.is_floating_point or bool((actions == actions.floor()).all())
            if not integral or actions.dtype == torch.bool or actions.is_complex():
                raise SeqrecError(f"{self.config.action_mode} actions must be integers, got {actions.dtype}")
            a = actions.to(self.device, torch.long)
            lo, hi = (int(v) for v in torch.aminmax(a)) if a.numel() else (0, 0)
        else:
            a = np.asarray(actions)
            if a.dtype.kind not in "iu" and not (a.dtype.kind == "f" and np.all(a == np.floor(a))):
                raise SeqrecError(f"{self.config.action_mode} actions must be integers, got {a.dtype}")
            a = a.astype(np.int64)  # a copy: the caller's array is never shared
            lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
            a = torch.from_numpy(a).to(self.device)
        if lo < 0 or hi >= high:
            raise SeqrecError(f"{what} out of range [0, {high}): {lo}..{hi}")
        return a

    @torch.inference_mode()
    def step(self, actions: np.ndarray | Tensor, *, checked: bool = False) -> StepOutput:
        """Advance every slot by one step (the caller handles autoreset).

        :param checked: the caller has checked ``actions`` against the action space already
            (``SeqRecEnv.step``): integer item or candidate ids are then not checked again.
        """
        if self.state is None:
            raise SeqrecError("Call reset before using step method.")
        if checked and self.config.action_mode in ("item", "slate") and isinstance(actions, np.ndarray):
            items = torch.from_numpy(actions.astype(np.int64)).to(self.device).reshape(self.n, -1)
            items = items[:, 0] if self.config.action_mode == "item" else items
        else:
            items = self.recommended_items(actions)
        self.t += 1
        width = items.shape[1] if items.dim() == 2 else 1
        noise = torch.from_numpy(uniforms(self.step_keys, self.t, width + 2).astype(np.float32)).to(self.device)
        result = self.simulator.step(self.state, items, noise=noise, validate=False)
        self.state = result.state
        clicked = result.clicked_item.cpu().numpy() >= 0
        beh = result.behaviours.cpu().numpy()
        reward = np.zeros(self.n)
        if clicked.any():
            w = (self.weights[0] + self.weights[1][result.behaviours]) * result.clicks  # beh = -1 (no click) reads the last weight, 0
            reward = w.cpu().numpy().astype(np.float64)
            self._refresh(np.flatnonzero(clicked))
        terminated = result.left.cpu().numpy()
        truncated = (self.t >= self.config.max_episode_steps) & ~terminated
        info = {
            "item": items.cpu().numpy(),
            "clicked_item": result.clicked_item.cpu().numpy(),
            "click_prob": result.click_prob.cpu().numpy(),
            "behaviour": beh,
            "user": self.state.users.cpu().numpy().copy(),
        }
        return StepOutput(reward, terminated, truncated, info)

    def consumed(self) -> torch.Tensor:
        """(B, n_items) bool: the items in each slot's (simulated) history (on the device)."""
        hist = torch.where(self.state.history >= 0, self.state.history, self.n_items)
        mask = torch.zeros(self.n, self.n_items + 1, dtype=torch.bool, device=self.device)
        return mask.scatter_(1, hist, True)[:, : self.n_items]

    def action_masks(self) -> np.ndarray:
        """Valid actions per slot: (B, n_items), (B, K) or (B, slate_size * n_items)."""
        mode = self.config.action_mode
        if mode == "continuous":
            raise SeqrecError("action masks are not defined for the continuous action mode")
        free = ~self.consumed() if self.config.mask_consumed else torch.ones(self.n, self.n_items, dtype=torch.bool, device=self.device)
        if mode == "candidates":
            free = torch.gather(free, 1, self.candidates)
        elif mode == "slate":
            free = free.repeat(1, self.config.slate_size)
        free[~free.any(dim=1)] = True  # never mask everything: a slot with no fresh choice may repeat one
        return free.cpu().numpy()


def _on_device(module, device: torch.device):
    """``module`` (an encoder or a simulator of a shared, cached bundle) on ``device``: itself when it
    is there already, else a copy, so envs on different devices never move each other's models."""
    current = module.device if hasattr(module, "device") else next(module.parameters()).device
    return module if current == device else copy.deepcopy(module).to(device)
