"""Candidate retrieval never hands out an invalid or repeated id, on any catalogue."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from seqrec.envs.retrieval import InnerProductIndex


def _clustered_catalogue(n_big: int, n_tiny: int, d: int = 8, seed: int = 0) -> torch.Tensor:
    """Most items in one tight cluster, a few in far-apart tiny ones: tiny IVF lists exist."""
    g = torch.Generator().manual_seed(seed)
    big = torch.randn(n_big, d, generator=g) * 0.05 + 1.0
    tiny = torch.randn(n_tiny, d, generator=g) * 10.0
    return torch.cat([big, tiny])


def test_ivf_returns_k_valid_distinct_items_when_probed_lists_are_short() -> None:
    items = _clustered_catalogue(5000, 40)
    index = InnerProductIndex(items, exact_below=100, n_probe=1)
    sizes = (index.lists >= 0).sum(1)
    assert int(sizes.min()) < 20, "the test needs IVF lists shorter than k"
    queries = torch.cat([items[-40:], torch.randn(200, 8)])  # queries aimed at the tiny clusters, and anywhere
    found = index.search(queries, 20)
    assert found.shape == (240, 20)
    assert int(found.min()) >= 0 and int(found.max()) < len(items)
    assert all(len(set(row.tolist())) == 20 for row in found)


def test_exact_and_ivf_refuse_more_candidates_than_items() -> None:
    with pytest.raises(ValueError, match="cannot retrieve 20 distinct items from a catalogue of 10"):
        InnerProductIndex(torch.randn(10, 4)).search(torch.randn(2, 4), 20)


def test_candidates_mode_when_every_candidate_is_consumed(tiny_bundle: Path) -> None:
    from seqrec.envs.seqrec_env import SeqRecEnv

    env = SeqRecEnv(bundle=tiny_bundle, action_mode="candidates", n_candidates=10)
    env.reset(seed=0)
    sessions = env.sessions
    n = sessions.n_items
    # every retrieved candidate is already consumed: the mask must still leave a choice
    sessions.state.history = sessions.state.history.clone()  # the env's state tensors are inference tensors
    sessions.state.history[0, -10:] = sessions.candidates[0]
    mask = env.action_masks()
    assert mask.shape == (10,) and mask.all()
    for _ in range(20):
        env.step(int(np.flatnonzero(mask)[0]))
        assert 0 <= int(env.sessions.candidates.min()) and int(env.sessions.candidates.max()) < n
        assert len(set(env.sessions.candidates[0].tolist())) == 10
        mask = env.action_masks()
        assert mask.any()
    with pytest.raises(Exception, match="exceeds the catalogue"):
        SeqRecEnv(bundle=tiny_bundle, action_mode="candidates", n_candidates=n + 1)
