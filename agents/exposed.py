"""Policies picking among each user's randomly exposed items: the picks of ``seqrec simulator validate``.

Each user of an unbiased log (:class:`~seqrec.simulators.validation.ExposedLog`) is put at their
logged state (:func:`~seqrec.simulators.validation.logged_histories`) and every policy picks one
of the items that user was randomly shown; :func:`~seqrec.simulators.validation.policy_ranking`
then compares the picks' simulated and observed outcomes.

* **baselines** (:mod:`seqrec.agents.policies`) act in the env's ``candidates`` mode with the
  user's exposed items as the candidates: random, most-popular, greedy (the encoder's top-1),
  linucb (untrained: its UCB bonus alone) and oracle (the simulator's best). A bare simulator
  folder has no encoder, so there greedy and linucb are skipped (and say so).
* **trained runs** (``seqrec train`` folders) see the observation of their own bundle, which must
  be of the same dataset: ``item`` mode picks the exposed item with the highest logit (Q-value
  for DQN), ``continuous`` the one nearest its query, ``candidates`` (K slots) by knockout:
  the exposed items fill the K slots in groups, each group's pick goes on to the next round.

Everything is batched over a block of users (``ValidationConfig.block_users``); the last block
is padded by repeating its last user, whose extra picks are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from seqrec.agents.policies import BASELINES, Policy, make_baseline
from seqrec.data.sequences import SequenceData
from seqrec.envs.bundle import Bundle, load_bundle
from seqrec.envs.config import EnvConfig
from seqrec.envs.rng import derive
from seqrec.envs.session import BatchedSessions
from seqrec.infra.errors import SeqrecError
from seqrec.simulators.simulator import UserSimulator
from seqrec.simulators.validation import ExposedLog, ValidationConfig, logged_histories, pair_blocks

__all__ = ["ENCODER_FREE", "SCORE_CELLS", "SimulatorSessions", "policy_picks"]

ENCODER_FREE = ("random", "most-popular", "oracle")
"""Baselines that need no encoder (all a bare simulator folder can run)."""
SCORE_CELLS = 1 << 25
"""Most (user, catalogue item) cells a block may hold: the oracle, most-popular and greedy score the
whole catalogue before taking the candidates, so large catalogues get smaller blocks."""


@dataclass
class SimulatorSessions:
    """What the :data:`ENCODER_FREE` baselines read of a :class:`BatchedSessions`, over a bare simulator
    (no bundle, no encoder): the state, the candidates, the keys of the random draws."""

    simulator: UserSimulator
    seq: SequenceData
    config: EnvConfig
    n: int
    state: object = None
    candidates: torch.Tensor | None = None
    keys: np.ndarray = field(init=False)
    t: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.n_items, self.device = self.seq.n_items, self.simulator.device
        self.keys, self.t = np.zeros(self.n, np.uint64), np.zeros(self.n, np.int64)

    consumed = BatchedSessions.consumed

    def start_from(self, users: np.ndarray, history: np.ndarray, behaviours: np.ndarray) -> None:
        """Put every slot at a logged state (as :meth:`BatchedSessions.start_from`)."""
        self.state = self.simulator.initial_state(torch.as_tensor(users), torch.as_tensor(history), torch.as_tensor(behaviours))


def policy_picks(sim: UserSimulator, seq: SequenceData, log: ExposedLog, bundle: Bundle | None = None,
                 runs: Sequence[Path] = (), config: ValidationConfig = ValidationConfig()) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Each policy's pick for every user of ``log`` (module docstring).

    :param bundle: the bundle whose simulator ``sim`` is (None: a bare simulator folder).
    :return: ``picks`` (name -> flat pair picked per user, ``(U,)``) and ``skipped`` (name -> why).
    """
    hist, beh = logged_histories(sim, seq, log.users)
    n = min(config.block_users, log.n_users, max(1, SCORE_CELLS // seq.n_items))
    env = EnvConfig(action_mode="candidates", n_candidates=int(np.diff(log.user_ptr).max()))
    if bundle is not None and bundle.simulator is not sim:
        raise SeqrecError("policy_picks: sim must be the bundle's simulator")
    names = BASELINES if bundle is not None else ENCODER_FREE
    skipped = {} if bundle is not None else {b: "needs an encoder: validate a bundle (seqrec prepare) for it" for b in BASELINES if b not in names}
    sessions = BatchedSessions(bundle, env, n) if bundle is not None else SimulatorSessions(sim, seq, env, n)
    policies = [make_baseline(name, config.seed) for name in names]
    choosers: dict[str, Callable] = {p.name: _baseline_chooser(p) for p in policies}
    for run in runs:
        name, chooser, run_sessions = _run_chooser(Path(run), seq, n)
        if name in choosers:
            raise SeqrecError(f"{run}: two policies are named {name!r}; rename the run folder")
        choosers[name] = lambda s, users, items, c=chooser, rs=run_sessions: c(rs, users, items)
    picks = {name: np.empty(log.n_users, np.int64) for name in choosers}
    for rows, idx, _ in pair_blocks(log, n):
        sel = np.minimum(np.arange(n), len(rows) - 1)  # pad the block to n slots with its last user
        users, items = log.users[rows][sel], log.items[idx][sel]
        _start(sessions, users, hist[rows][sel], beh[rows][sel])
        for name, choose in choosers.items():
            col = choose(sessions, (users, hist[rows][sel], beh[rows][sel]), items)
            picks[name][rows] = idx[np.arange(len(rows)), col[: len(rows)]]
    return picks, skipped


def _start(sessions, users: np.ndarray, hist: np.ndarray, beh: np.ndarray) -> None:
    """Slots at the users' logged states; random draws keyed by user (whatever the block)."""
    sessions.keys[:] = derive(users.astype(np.uint64), 0x7A11D)
    if getattr(sessions, "index", None) is not None:  # the last block's exposed items may be narrower than K
        sessions.candidates = sessions.candidates.new_zeros(sessions.n, sessions.config.n_candidates)
    sessions.start_from(users, hist, beh)


def _baseline_chooser(policy: Policy) -> Callable:
    """A baseline acting in ``candidates`` mode on the exposed items: returns the picked column, ``(n,)``."""

    def choose(sessions, state: tuple, items: np.ndarray) -> np.ndarray:
        sessions.candidates = torch.as_tensor(items, device=sessions.device)
        with torch.inference_mode():
            return np.asarray(policy.act(None, sessions)).reshape(-1)  # baselines read the sessions, not the observation

    return choose


def _run_chooser(run: Path, seq: SequenceData, n: int) -> tuple[str, Callable, BatchedSessions]:
    """A trained run as a chooser over the exposed items, with sessions over its own bundle."""
    from seqrec.agents.train import load_agent, run_label

    model, cfg = load_agent(run)
    own = load_bundle(cfg.bundle)
    if own.seq.meta.get("key") != seq.meta.get("key"):
        raise SeqrecError(f"{run}: trained on bundle {cfg.bundle or 'default'} of dataset {own.seq.meta.get('key')}, "
                          f"not on the simulator's dataset {seq.meta.get('key')}; its picks would be of other users and items")  # fmt: skip
    options = cfg.env_options()
    mode = options["action_mode"]
    if mode not in ("item", "candidates", "continuous"):
        raise SeqrecError(f"{run}: a {mode!r}-mode agent cannot pick one item among a user's exposed items")
    sessions = BatchedSessions(own, EnvConfig(**options), n)

    def choose(s: BatchedSessions, state: tuple, items: np.ndarray) -> np.ndarray:
        _start(s, *state)
        if mode == "candidates":
            best = _knockout(model, s, items)
        else:
            scores = _item_scores(model, s, mode)
            best = items[np.arange(len(items)), scores.gather(1, torch.as_tensor(items, device=scores.device)).argmax(1).cpu().numpy()]
        return (items == best[:, None]).argmax(1)

    return run_label(run, cfg), choose, sessions


def _item_scores(model, sessions: BatchedSessions, mode: str) -> torch.Tensor:
    """An item-mode agent's logits (or Q-values), or a continuous agent's query scores, over the catalogue ``(n, n_items)``."""
    obs = sessions.observation()
    if mode == "continuous":
        q, _ = model.predict(obs, deterministic=True)
        return torch.as_tensor(q, dtype=torch.float32, device=sessions.device) @ sessions.item_emb.T
    return _action_scores(model, obs)


def _action_scores(model, obs) -> torch.Tensor:
    """Per-action preference of a discrete SB3 agent, ``(n, n_actions)``: logits, Q-values, or mean quantiles."""
    policy = model.policy
    obs_t, _ = policy.obs_to_tensor(obs)
    with torch.no_grad():
        if hasattr(policy, "quantile_net"):  # QR-DQN: (n, n_quantiles, n_actions)
            return policy.quantile_net(obs_t).mean(dim=1)
        if hasattr(policy, "q_net"):  # DQN
            return policy.q_net(obs_t)
        return policy.get_distribution(obs_t).distribution.logits


def _knockout(model, sessions: BatchedSessions, items: np.ndarray) -> np.ndarray:
    """A ``candidates``-mode agent's pick among ``items (n, W)`` by rounds of its K slots (module docstring)."""
    K = sessions.config.n_candidates
    field_ = items
    while True:
        W = field_.shape[1]
        G = -(-W // K)
        slots = np.concatenate([field_, np.repeat(field_[:, :1], G * K - W, axis=1)], axis=1).reshape(len(field_), G, K)
        winners = []
        for g in range(G):
            sessions.candidates = torch.as_tensor(slots[:, g], device=sessions.device)
            col = _action_scores(model, sessions.observation()).argmax(1).cpu().numpy()
            winners.append(slots[np.arange(len(slots)), g, col])
        field_ = np.stack(winners, axis=1)
        if G == 1:
            return field_[:, 0]
