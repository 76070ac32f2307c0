"""Online evaluation in the simulator: every policy on the same seeded users.

Episode ``i`` of an evaluation seeded ``s`` is the env's sub-episode seeded ``s + i``, so
every policy meets the same users with the same random draws (common random numbers),
and the same seed gives the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from seqrec.agents.policies import Policy
from seqrec.infra.threads import torch_threads
from seqrec.envs.bundle import Bundle
from seqrec.envs.vector_env import SeqRecVectorEnv


@dataclass
class EvalConfig:
    """How many users and how they are drawn."""

    episodes: int = 1000
    """Simulated users (episodes) per policy."""
    seed: int = 0
    """Episode i is seeded ``seed + i``."""
    batch: int = 500
    """Episodes simulated at once."""
    threads: int | None = 1
    """torch CPU threads while evaluating (None: torch's default; see :mod:`seqrec.infra.threads`)."""


def _ild(emb: torch.Tensor, items: np.ndarray, alive: np.ndarray) -> np.ndarray:
    """Intra-list diversity per episode: mean pairwise (1 - cosine) of its recommended items."""
    e = torch.nn.functional.normalize(emb.cpu()[torch.as_tensor(items)], dim=-1) * torch.as_tensor(alive)[..., None]
    n = alive.sum(axis=1).astype(np.float64)
    s = e.sum(dim=1)
    pair_cos = ((s * s).sum(-1) - (e * e).sum((-1, -2))).numpy()
    pairs = n * (n - 1)
    return np.where(pairs > 0, 1.0 - pair_cos / np.maximum(pairs, 1), np.nan)


def evaluate_policy(policy: Policy, bundle: Bundle, env_options: dict, config: EvalConfig = EvalConfig()) -> dict:
    """Run ``config.episodes`` episodes of ``policy``; return the metrics and per-episode returns.

    Metrics: mean return with a 95% CI, click-through rate, mean episode length
    (retention), catalogue coverage, intra-list diversity and novelty.
    """
    with torch_threads(config.threads):
        return _evaluate(policy, bundle, env_options, config)


def _evaluate(policy: Policy, bundle: Bundle, env_options: dict, config: EvalConfig) -> dict:
    returns, lengths, clicks, ilds, shown_all, novelty = [], [], [], [], [], []
    pop = bundle.seq.item_popularity(("train",)).astype(np.float64)
    info_content = -np.log2((pop + 1) / (pop.sum() + len(pop)))
    for start in range(0, config.episodes, config.batch):
        n = min(config.batch, config.episodes - start)
        venv = SeqRecVectorEnv(num_envs=n, bundle=bundle, **env_options)
        obs, _ = venv.reset(seed=config.seed + start)
        sessions = venv.sessions
        alive = np.ones(n, bool)
        ret, length, clk = np.zeros(n), np.zeros(n, np.int64), np.zeros(n)
        shown, alive_log = [], []
        while alive.any():
            actions = policy.act(obs, sessions)
            obs, reward, terminated, truncated, info = venv.step(actions)
            policy.update(sessions, actions, reward)
            item = np.asarray(info["item"]).reshape(n, -1)[:, 0]
            ret += reward * alive
            length += alive
            clk += (np.asarray(info["clicked_item"]) >= 0) * alive
            shown.append(item)
            alive_log.append(alive.copy())
            alive &= ~(terminated | truncated)
        items, mask = np.stack(shown, 1), np.stack(alive_log, 1)
        returns.append(ret), lengths.append(length), clicks.append(clk)
        ilds.append(_ild(sessions.item_emb, items, mask))
        shown_all.append(items[mask])
        novelty.append(info_content[items[mask]])
    r, L, c = np.concatenate(returns), np.concatenate(lengths), np.concatenate(clicks)
    shown_flat = np.concatenate(shown_all)
    half = 1.96 * r.std(ddof=1) / np.sqrt(len(r)) if len(r) > 1 else float("nan")
    return {
        "policy": policy.name,
        "episodes": int(len(r)),
        "mean_return": float(r.mean()),
        "return_ci95": [float(r.mean() - half), float(r.mean() + half)],
        "ctr": float(c.sum() / max(L.sum(), 1)),
        "mean_length": float(L.mean()),
        "coverage": float(len(np.unique(shown_flat)) / bundle.seq.n_items),
        "diversity": float(np.nanmean(np.concatenate(ilds))),
        "novelty": float(np.concatenate(novelty).mean()),
        "returns": r.tolist(),
    }
