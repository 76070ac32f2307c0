"""User simulator: determinism, step shapes, click and exit rates, satiation, checkpoints."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from seqrec.infra.errors import CheckpointError, SeqrecError
from seqrec.data.prepare import prepare_dataset
from seqrec.data.synth_config import SynthConfig
from seqrec.data.synthetic import write_synthetic
from seqrec.simulators.config import SimulatorConfig
from seqrec.simulators.dynamics import ExitModel, SimState, compact_left, fit_exit_model
from seqrec.simulators.examples import ClickLog
from seqrec.simulators.simulator import UserSimulator, fit_simulator

SMALL = SynthConfig(n_users=120, n_items=60, n_categories=6, max_events_per_user=60, seed=3)
FAST = SimulatorConfig(dim=8, max_history=20, epochs=2, batch_size=256, seed=0)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("simsynth")
    folder = write_synthetic(root / "data", SMALL)
    seq = prepare_dataset(folder, cache_dir=root / "cache")
    return folder, seq


@pytest.fixture(scope="module")
def sim(synth) -> UserSimulator:
    torch.set_num_threads(1)
    return fit_simulator(synth[1], FAST)


def _state(sim: UserSimulator, seq, users: np.ndarray) -> SimState:
    clicks = ClickLog.build(seq, sim.config.negative_behaviours)
    hist, beh = clicks.user_histories(users, sim.max_history, upto="valid")
    return sim.initial_state(torch.from_numpy(users), torch.from_numpy(hist), torch.from_numpy(beh))


def _users(seq, n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, seq.n_users, n)


# -- determinism --------------------------------------------------------------------------


def test_same_seed_same_responses(sim, synth):
    seq = synth[1]
    state = _state(sim, seq, _users(seq, 64))
    items = torch.randint(0, seq.n_items, (64,), generator=torch.Generator().manual_seed(1))
    slate = torch.randint(0, seq.n_items, (64, 5), generator=torch.Generator().manual_seed(2))
    runs = []
    for _ in range(2):
        g = torch.Generator().manual_seed(123)
        st, out = state, []
        for t in range(5):
            res = sim.step(st, items if t % 2 == 0 else slate, g)
            out.append((res.clicks, res.clicked_item, res.behaviours, res.values, res.left, res.state.history))
            st = res.state
        runs.append(out)
    for a, b in zip(*runs):
        for x, y in zip(a, b):
            assert torch.equal(x, y)
    # another seed gives other draws
    res_other = sim.step(state, slate, torch.Generator().manual_seed(999))
    res_first = sim.step(state, slate, torch.Generator().manual_seed(123))
    assert not torch.equal(res_other.clicks, res_first.clicks) or not torch.equal(res_other.left, res_first.left)


def test_same_seed_same_fit(synth, sim):
    again = fit_simulator(synth[1], FAST)
    state = _state(sim, synth[1], _users(synth[1], 32))
    items = torch.arange(32) % synth[1].n_items
    assert torch.allclose(sim.click_probability(state, items), again.click_probability(state, items))


def test_embedding_size_chosen_on_held_out_log_loss(synth, sim):
    scores = sim.info["response"]["dim_search"]
    assert [s["dim"] for s in scores] == [FAST.dim, *FAST.dim_search]
    best = min(scores, key=lambda s: s["valid_log_loss"])
    assert sim.model.dim == best["dim"] == sim.info["response"]["dim"]
    # the kept model is that candidate's own fit: fitting its size alone gives the same simulator
    alone = fit_simulator(synth[1], replace(FAST, dim=best["dim"], dim_search=()))
    assert [s["dim"] for s in alone.info["response"]["dim_search"]] == [best["dim"]]
    state = _state(sim, synth[1], _users(synth[1], 32))
    items = torch.arange(32) % synth[1].n_items
    assert torch.allclose(sim.click_probability(state, items), alone.click_probability(state, items))


# -- step shapes -------------------------------------------------------------------------


@pytest.mark.parametrize("k", [0, 1, 4])
def test_step_shapes(sim, synth, k):
    seq = synth[1]
    B = 16
    state = _state(sim, seq, _users(seq, B))
    shape = (B, k) if k else (B,)
    items = torch.randint(0, seq.n_items, shape, generator=torch.Generator().manual_seed(0))
    p = sim.click_probability(state, items)
    assert p.shape == shape and p.dtype == torch.float32 and ((p > 0) & (p < 1)).all()
    res = sim.step(state, items, torch.Generator().manual_seed(0))
    for name in ("clicks", "clicked_item", "position", "behaviours", "values", "left", "click_prob"):
        assert getattr(res, name).shape == (B,), name
    assert res.clicks.dtype == torch.float32 and res.left.dtype == torch.bool
    assert res.clicked_item.dtype == torch.long and res.behaviours.dtype == torch.long
    clicked = res.clicks > 0
    assert ((res.clicked_item >= 0) == clicked).all() and ((res.behaviours >= 0) == clicked).all()
    assert ((res.position >= 0) == clicked).all()
    if clicked.any():
        rows = clicked.nonzero().flatten()
        it = items[:, None] if not k else items
        assert torch.equal(it[rows, res.position[rows]], res.clicked_item[rows])
        assert torch.equal(res.state.history[rows, -1], res.clicked_item[rows])
        assert (res.state.misses[rows] == 0).all()
        names = [sim.behaviour_names[b] for b in res.behaviours[rows].tolist()]
        assert "view" not in names
    assert (res.state.misses[~clicked] == state.misses[~clicked] + 1).all()
    assert torch.equal(res.state.history[~clicked], state.history[~clicked])
    assert (res.state.steps == 1).all()
    assert res.state.history.shape == state.history.shape == (B, sim.max_history)


def test_bad_items_raise_one_line(sim, synth):
    state = _state(sim, synth[1], _users(synth[1], 4))
    for bad in (torch.tensor([0, 1, 2, synth[1].n_items]), torch.tensor([0.5, 1, 2, 3]), torch.zeros(5, dtype=torch.long),
                torch.zeros((4, 2, 2), dtype=torch.long)):
        with pytest.raises(SeqrecError) as err:
            sim.step(state, bad, torch.Generator())
        assert "\n" not in str(err.value)


# -- rates --------------------------------------------------------------------------------


def _big_state(sim, seq, B: int) -> SimState:
    return _state(sim, seq, _users(seq, B, seed=5))


@pytest.mark.parametrize("k", [0, 3])
def test_click_rate_matches_click_probability(sim, synth, k):
    seq = synth[1]
    B = 20000
    state = _big_state(sim, seq, B)
    g = torch.Generator().manual_seed(7)
    shape = (B, k) if k else (B,)
    items = torch.randint(0, seq.n_items, shape, generator=torch.Generator().manual_seed(8))
    res = sim.step(state, items, g)
    expected = res.click_prob.double()
    if not k:
        assert torch.allclose(res.click_prob, sim.click_probability(state, items))
    else:  # cascade: P(any click) = 1 - prod(1 - decay^j p_j)
        p = sim.click_probability(state, items).double()
        exam = sim.config.examination_decay ** torch.arange(k, dtype=torch.float64)
        assert torch.allclose(expected, 1 - torch.prod(1 - exam * p, dim=1), atol=1e-6)
    sd = math.sqrt(float((expected * (1 - expected)).sum())) / B
    assert abs(float(res.clicks.double().mean() - expected.mean())) < 4 * sd


def test_exit_rate_matches_fitted_parameters(sim, synth):
    seq = synth[1]
    B = 20000
    state = _big_state(sim, seq, B)
    state.misses = torch.randint(0, 8, (B,), generator=torch.Generator().manual_seed(3))
    items = torch.randint(0, seq.n_items, (B,), generator=torch.Generator().manual_seed(4))
    res = sim.step(state, items, torch.Generator().manual_seed(5))
    em = sim.exit_model
    p = torch.sigmoid(em.intercept + em.slope * res.state.misses.double())
    assert torch.allclose(sim.exit_probability(res.state).double(), p, atol=1e-6)
    sd = math.sqrt(float((p * (1 - p)).sum())) / B
    assert abs(float(res.left.double().mean() - p.mean())) < 4 * sd
    # per misses value too: the logistic curve itself, not only its average
    for m in (0, 4):
        rows = res.state.misses == m
        pm = float(torch.sigmoid(torch.tensor(em.intercept + em.slope * m)))
        n = int(rows.sum())
        assert abs(float(res.left[rows].double().mean()) - pm) < 4 * math.sqrt(pm * (1 - pm) / n) + 1e-9


def test_exit_fit_recovers_the_generator(synth):
    """Maximum likelihood on the log's sessions lands near the synthetic generator's e0, e1."""
    seq = synth[1]
    clicks = ClickLog.build(seq, SimulatorConfig().negative_behaviours)
    em = fit_exit_model(seq, clicks.positive, 1800, 50, 0.3)
    assert em.slope_fitted and em.source == "session column"
    assert abs(em.intercept - SMALL.exit_intercept) < 0.5 and abs(em.slope - SMALL.exit_slope) < 0.2


def test_exit_without_non_clicks_uses_default_slope(synth):
    seq = synth[1]
    em = fit_exit_model(seq, np.ones(seq.n_events, bool), 1800, 50, 0.25)
    assert not em.slope_fitted and em.slope == 0.25
    assert math.isfinite(em.intercept)


# -- satiation -----------------------------------------------------------------------------


def test_satiation_lowers_a_near_duplicate(sim, synth):
    seq = synth[1]
    cats = np.asarray(seq.item_features).argmax(1)
    B = 32
    last = torch.arange(B) % seq.n_items
    state = sim.initial_state(torch.arange(B) % seq.n_users, last[:, None])
    # near-duplicate: another item of the last clicked item's category
    dup = torch.tensor([np.flatnonzero((cats == cats[i]) & (np.arange(seq.n_items) != i))[0] for i in last.tolist()])
    fresh = SimState(**{**state.__dict__, "satiation": torch.zeros_like(state.satiation)})
    assert (sim.click_probability(state, dup) < sim.click_probability(fresh, dup)).all()
    assert (sim.click_probability(state, last) < sim.click_probability(fresh, last)).all()
    # clicking the item once more raises its satiation memory: same history, more weight
    more = SimState(**{**state.__dict__, "satiation": state.satiation * 2})
    assert (sim.click_probability(more, dup) < sim.click_probability(state, dup)).all()


def test_satiation_memory_moves_with_clicks_and_idle_steps(sim, synth):
    seq = synth[1]
    state = _state(sim, seq, _users(seq, 8))
    gamma = float(sim.model.decay)
    clicked = torch.tensor([True, False] * 4)
    items = torch.arange(8)
    from seqrec.simulators.dynamics import push_click

    nxt = push_click(state, clicked, items, torch.ones(8, dtype=torch.long), gamma, 0.5)
    assert torch.allclose(nxt.satiation[clicked, -1], torch.ones(4))
    assert torch.allclose(nxt.satiation[clicked, :-1], state.satiation[clicked, 1:] * gamma)
    assert torch.allclose(nxt.satiation[~clicked], state.satiation[~clicked] * 0.5)


# -- state helpers -------------------------------------------------------------------------


def test_initial_state_keeps_clicks_only(sim):
    hist = torch.tensor([[-1, 3, 4, 5, 6], [1, 2, 3, 4, 5]])
    beh = torch.tensor([[-1, 0, 1, 0, 2], [1, 1, 1, 1, 1]])  # 0 = view
    st = sim.initial_state(torch.tensor([0, 1]), hist, beh)
    assert st.history.shape == (2, sim.max_history)
    assert st.history[0, -2:].tolist() == [4, 6] and (st.history[0, :-2] == -1).all()
    assert st.history[1, -5:].tolist() == [1, 2, 3, 4, 5]
    assert st.behaviours[0, -2:].tolist() == [1, 2]
    gamma = float(sim.model.decay)
    assert torch.allclose(st.satiation[0, -2:], torch.tensor([gamma, 1.0]))
    assert (st.satiation[0, :-2] == 0).all()
    with pytest.raises(SeqrecError):
        sim.initial_state(torch.tensor([0]), torch.tensor([[1.5]]))


def test_compact_left_longer_than_target():
    h = torch.arange(8).reshape(1, 8)
    keep = torch.tensor([[True, False, True, True, False, True, True, True]])
    (out,) = compact_left(h, keep, 4)
    assert out.tolist() == [[3, 5, 6, 7]]


def test_index_and_replace_rows(sim, synth):
    seq = synth[1]
    a = _state(sim, seq, np.arange(6))
    b = _state(sim, seq, np.arange(6, 8))
    old_hist = a.history
    sub = a.index(torch.tensor([True, False, True, False, False, False]))
    assert sub.batch_size == 2 and torch.equal(sub.history, a.history[[0, 2]])
    a.replace_rows(torch.tensor([1, 4]), b)
    assert torch.equal(a.users[[1, 4]], torch.tensor([6, 7]))
    assert torch.equal(a.history[[1, 4]], b.history)
    assert not torch.equal(old_hist, a.history)  # the old tensor was not written in place
    with pytest.raises(SeqrecError):
        a.replace_rows(torch.tensor([0]), b)


# -- checkpoints ----------------------------------------------------------------------------


def test_checkpoint_round_trip(sim, synth, tmp_path: Path):
    seq = synth[1]
    path = sim.save(tmp_path / "sim.pt")
    loaded = UserSimulator.load(path, dataset_key=seq.meta["key"])
    state = _state(sim, seq, _users(seq, 16))
    items = torch.arange(16)
    assert torch.allclose(sim.click_probability(state, items), loaded.click_probability(state, items))
    assert loaded.behaviour_names == sim.behaviour_names and loaded.n_items == sim.n_items
    r1 = sim.step(state, items, torch.Generator().manual_seed(0))
    r2 = loaded.step(state, items, torch.Generator().manual_seed(0))
    assert torch.equal(r1.clicks, r2.clicks) and torch.equal(r1.behaviours, r2.behaviours)
    assert not list(tmp_path.glob(".*.tmp"))  # the temp file was renamed


def _one_line_error(path: Path, **kw) -> str:
    with pytest.raises(CheckpointError) as err:
        UserSimulator.load(path, **kw)
    msg = str(err.value)
    assert "\n" not in msg and str(path.name) in msg
    return msg


def test_checkpoint_errors_are_one_line(sim, tmp_path: Path):
    good = sim.save(tmp_path / "good.pt")
    data = good.read_bytes()
    assert "missing" in _one_line_error(tmp_path / "absent.pt")
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    assert "truncated" in _one_line_error(tmp_path / "trunc.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all")
    _one_line_error(tmp_path / "garbage.pt")
    flipped = bytearray(data)
    flipped[-100] ^= 0xFF
    (tmp_path / "flip.pt").write_bytes(bytes(flipped))
    _one_line_error(tmp_path / "flip.pt")
    assert "fitted on dataset" in _one_line_error(good, dataset_key="another-dataset")


def test_checkpoint_wrong_version(sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import seqrec.simulators.simulator as simmod

    monkeypatch.setattr(simmod, "FORMAT_VERSION", 99)
    path = sim.save(tmp_path / "v99.pt")
    monkeypatch.setattr(simmod, "FORMAT_VERSION", 1)
    assert "version 99" in _one_line_error(path)


def test_config_rejects_bad_values():
    with pytest.raises(SeqrecError, match="dim"):
        SimulatorConfig(dim=0)
    with pytest.raises(SeqrecError, match="examination_decay"):
        SimulatorConfig(examination_decay=1.5)
    for bad in ((0,), ("4",), "4", (True,)):
        with pytest.raises(SeqrecError, match="dim_search"):
            SimulatorConfig(dim_search=bad)
    assert SimulatorConfig.from_dict(SimulatorConfig().to_dict()) == SimulatorConfig()
    assert SimulatorConfig.from_dict(SimulatorConfig(dim_search=[2, 16]).to_dict()).dim_search == (2, 16)
    assert SimulatorConfig(dim=4, dim_search=(4, 8, 4)).dims == (4, 8)
    with pytest.raises(SeqrecError, match="unknown"):
        SimulatorConfig.from_dict({"nope": 1})


def test_exit_model_probability_shape():
    em = ExitModel(intercept=-2.0, slope=0.5)
    m = torch.tensor([[0, 1], [2, 3]])
    assert torch.allclose(em.probability(m), torch.sigmoid(-2.0 + 0.5 * m.float()))


def test_plain_csv_log_without_features_or_negatives(tmp_path: Path):
    """A generic (user, item, time) log: no side features, no real negatives, sessions from time gaps."""
    rng = np.random.default_rng(0)
    n_users, n_items, per_user = 40, 30, 25
    users = np.repeat(np.arange(n_users), per_user)
    items = (users * 7 + rng.integers(0, 8, users.size)) % n_items  # user-specific neighbourhoods
    gaps = np.where(rng.random(users.size) < 0.15, 7200, 60)
    ts = 1_000_000 + np.cumsum(gaps)
    path = tmp_path / "log.csv"
    path.write_text("user,item,time\n" + "\n".join(f"u{u},i{i},{t}" for u, i, t in zip(users, items, ts)) + "\n")
    seq = prepare_dataset(path, columns="user=user,item=item,time=time", cache_dir=tmp_path / "cache")
    assert seq.item_features is None
    sim = fit_simulator(seq, SimulatorConfig(dim=8, max_history=10, epochs=5, n_negatives=4, batch_size=64))
    assert sim.info["response"]["calibration_protocol"] == "sampled"
    assert not sim.exit_model.slope_fitted and sim.exit_model.source.startswith("time gaps")
    assert sim.info["response"]["repeat_penalty_fitted"] == (sim.info["response"]["repeat_rows"] >= 50)
    state = _state(sim, seq, np.arange(8))
    res = sim.step(state, torch.arange(8) % seq.n_items, torch.Generator().manual_seed(0))
    assert res.values[res.clicks > 0].eq(1.0).all()  # no value column: every event is worth 1
    near = sim.click_probability(state, state.history[:, -1])
    fresh = sim.click_probability(SimState(**{**state.__dict__, "satiation": torch.zeros_like(state.satiation)}),
                                  state.history[:, -1])
    assert (near < fresh).all()  # satiation without side features: the same item counts as similar


def test_cached_history_terms_give_the_uncached_probabilities(sim, synth):
    """The simulator reuses the response model's history terms while a state's tensors are the
    same; across clicks, idle steps and a replaced row it scores exactly as a fresh forward."""
    _, seq = synth
    state = _state(sim, seq, _users(seq, 32, seed=4))
    items = torch.randint(0, sim.n_items, (32, 5), generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)

    def fresh(st):
        with torch.no_grad():
            return sim.calibration.probability(sim.model(st.users, st.history, items, satiation=st.satiation))

    for _ in range(6):
        assert torch.equal(sim.click_probability(state, items), fresh(state))
        state = sim.step(state, items[:, 0], gen).state
    other = _state(sim, seq, _users(seq, 1, seed=9))
    state.replace_rows(torch.tensor([3]), other)  # new tensors: the cache must not serve the old row
    assert torch.equal(sim.click_probability(state, items), fresh(state))
