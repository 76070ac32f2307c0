"""The simulator on log shapes that broke it: anonymous sessions, rare items, popularity that leaks labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from seqrec.data.prepare import prepare_dataset
from seqrec.simulators.config import SimulatorConfig
from seqrec.simulators.dynamics import fit_exit_model
from seqrec.simulators.examples import positive_mask
from seqrec.simulators.response import ResponseModel
from seqrec.simulators.response_fit import model_features


def _sessions_log(path: Path, n_sessions: int = 300, length: int = 5, n_items: int = 40, seed: int = 0) -> Path:
    """Anonymous sessions, one per user id, days apart: no time gap inside any user's events."""
    rng = np.random.default_rng(seed)
    rows = [f"{s},{rng.integers(n_items)},{1_600_000_000 + s * 86_400 + 60 * t}" for s in range(n_sessions) for t in range(length)]
    path.write_text("session,item,ts\n" + "\n".join(rows) + "\n")
    return path


def test_sessions_as_users_end_in_exits(tmp_path: Path) -> None:
    seq = prepare_dataset(_sessions_log(tmp_path / "s.csv"), columns="user=session,item=item,time=ts", cache_dir=tmp_path / "c")
    cfg = SimulatorConfig()
    model = fit_exit_model(seq, positive_mask(seq, cfg.negative_behaviours), cfg.session_gap_s, cfg.max_misses, cfg.default_exit_slope)
    # every session but the last one (within the gap of the log's end: censored) ends in an exit
    assert model.n_exits == seq.n_users - 1
    assert model.intercept == pytest.approx(np.log(model.n_exits / (model.n_steps - model.n_exits)), abs=1e-6)


def test_popularity_features_leave_each_training_row_out(tmp_path: Path) -> None:
    seq = prepare_dataset(_sessions_log(tmp_path / "s.csv"), columns="user=session,item=item,time=ts", cache_dir=tmp_path / "c")
    rows = np.flatnonzero(seq.split == 0)
    positive = np.zeros(seq.n_events, bool)
    positive[rows[::2]] = True  # half the rows are clicks, so a click column exists
    features, loo = model_features(seq, rows, positive, None)
    assert features.shape == (seq.n_items, 2) and loo.shape == (len(rows), 2)
    exposures = np.bincount(seq.items[rows], minlength=seq.n_items)
    clicks = np.bincount(seq.items[rows[positive[rows]]], minlength=seq.n_items)
    raw = np.log1p(np.stack([exposures, clicks], 1).astype(np.float64))
    e, c = exposures[seq.items[rows]], clicks[seq.items[rows]]
    np.testing.assert_allclose(loo[:, 0], (np.log1p(e - 1) - np.log1p(e)) / raw[:, 0].std(), rtol=1e-5)
    want = np.where(positive[rows], (np.log1p(c - 1) - np.log1p(c)) / raw[:, 1].std(), 0.0)
    np.testing.assert_allclose(loo[:, 1], want, rtol=1e-5, atol=1e-7)
    # the feature of a row's item, moved by its loo change, is the item's feature without that row
    left_out = (np.log1p(c - positive[rows]) - raw[:, 1].mean()) / raw[:, 1].std()
    np.testing.assert_allclose(features[seq.items[rows], 1].numpy() + loo[:, 1], left_out, rtol=1e-4, atol=1e-5)


def test_rare_items_and_users_get_no_id_embedding() -> None:
    torch.manual_seed(0)
    has_item, has_user = torch.tensor([1.0, 0.0, 1.0]), torch.tensor([0.0, 1.0])
    model = ResponseModel(2, 3, 4, 5, torch.randn(3, 2), item_has_id=has_item, user_has_id=has_user)
    vectors = model.item_vectors(torch.arange(3))
    np.testing.assert_allclose(vectors[1].detach().numpy(), model.feature_map(model.features[1]).detach().numpy(), atol=1e-7)
    assert not torch.allclose(vectors[0], model.feature_map(model.features[0]))
    hist = torch.full((2, 5), -1)
    z = model(torch.tensor([0, 0]), hist, torch.tensor([[0], [0]]))
    with torch.no_grad():
        model.user.weight[0] += 5.0  # user 0 has no id: its embedding must not matter
    np.testing.assert_allclose(model(torch.tensor([0, 0]), hist, torch.tensor([[0], [0]])).detach().numpy(), z.detach().numpy())
