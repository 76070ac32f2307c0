"""The synthetic dataset: determinism, file format, and that the log follows the documented model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seqrec.infra.errors import SeqrecError
from seqrec.data.ground_truth import FORMAT_VERSION, GroundTruth
from seqrec.data.synth_config import SynthConfig
from seqrec.data.synthetic import BEHAVIOURS, generate, write_synthetic

FILES = ("events.csv", "items.csv", "truth.npz", "synth.json")
SMALL = SynthConfig(n_users=300, n_items=120, n_categories=8, seed=3)


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("synth") / "small", SMALL)


@pytest.fixture(scope="module")
def events(small_dir: Path) -> pd.DataFrame:
    return pd.read_csv(small_dir / "events.csv")


@pytest.fixture(scope="module")
def truth(small_dir: Path) -> GroundTruth:
    return GroundTruth.load(small_dir)


def click_histories(events: pd.DataFrame, window: int) -> np.ndarray:
    """For each row, the user's earlier clicked items (value >= 1), oldest first, left-padded with -1."""
    users, items, clicked = events.user.to_numpy(), events.item.to_numpy(), events.value.to_numpy() >= 1
    out = np.full((len(events), window), -1, dtype=np.int64)
    past: dict[int, list[int]] = {}
    for r in range(len(events)):
        h = past.setdefault(int(users[r]), [])[-window:]
        if h:
            out[r, -len(h):] = h
        if clicked[r]:
            past[int(users[r])].append(int(items[r]))
    return out


def binomial_z(successes: float, expected: float, variance: float) -> float:
    return abs(successes - expected) / np.sqrt(variance)


# --- determinism and files ----------------------------------------------------------------


def test_same_seed_byte_identical_and_different_seed_differs(tmp_path: Path, small_dir: Path) -> None:
    again = write_synthetic(tmp_path / "again", SMALL)
    for name in FILES:
        assert (again / name).read_bytes() == (small_dir / name).read_bytes(), name
    other = write_synthetic(tmp_path / "other", SynthConfig(n_users=300, n_items=120, n_categories=8, seed=4))
    for name in FILES:
        assert (other / name).read_bytes() != (small_dir / name).read_bytes(), name


def test_write_is_atomic_and_replaces_previous_output(tmp_path: Path) -> None:
    cfg = SynthConfig(n_users=20, n_items=30, n_categories=4, seed=0)
    out = write_synthetic(tmp_path / "d", cfg)
    write_synthetic(out, SynthConfig(n_users=25, n_items=30, n_categories=4, seed=0))
    assert json.loads((out / "synth.json").read_text())["config"]["n_users"] == 25
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no temp folders left behind
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("keep me")
    with pytest.raises(SeqrecError, match="refusing to overwrite"):
        write_synthetic(tmp_path / "foreign", cfg)
    assert (tmp_path / "foreign" / "notes.txt").read_text() == "keep me"


def test_file_contents(small_dir: Path, events: pd.DataFrame) -> None:
    assert sorted(p.name for p in small_dir.iterdir()) == sorted(FILES)
    assert (small_dir / "events.csv").read_text().splitlines()[0] == "user,item,ts,behaviour,value,session,pscore"
    assert list(events.columns) == ["user", "item", "ts", "behaviour", "value", "session", "pscore"]
    assert set(events.user.unique()) == set(range(SMALL.n_users))  # every user has a log
    assert events.item.between(0, SMALL.n_items - 1).all()
    assert set(events.value.unique()) <= {0, 1, 2, 3}
    assert (events.behaviour.map(BEHAVIOURS.index) == events.value).all()
    # sorted by user then ts, ts strictly increasing per user
    assert (np.diff(events.user) >= 0).all()
    same_user = np.diff(events.user) == 0
    assert (np.diff(events.ts)[same_user] > 0).all()
    # sessions: contiguous global ids by (user, order); in-session gaps 30..120 s, new sessions >= 1 h
    new_sess = np.diff(events.session) != 0
    assert (np.diff(events.session) >= 0).all() and set(np.diff(events.session)) <= {0, 1}
    gaps = np.diff(events.ts)
    inside = same_user & ~new_sess
    assert gaps[inside].min() >= SMALL.gap_min_s and gaps[inside].max() <= SMALL.gap_max_s
    assert gaps[same_user & new_sess].min() >= SMALL.session_gap_min_s
    assert (events.groupby("session").user.nunique() == 1).all()
    assert ((events.pscore > 0) & (events.pscore <= 1)).all()
    assert len(events) <= SMALL.n_users * SMALL.max_events_per_user

    items = pd.read_csv(small_dir / "items.csv")
    assert list(items.columns) == ["item", "category", "popularity"]
    assert items.item.tolist() == list(range(SMALL.n_items))
    assert set(items.category) == set(range(SMALL.n_categories))
    assert items.popularity.sum() == pytest.approx(1.0, abs=1e-8)

    meta = json.loads((small_dir / "synth.json").read_text())
    assert meta["format_version"] == FORMAT_VERSION
    assert SynthConfig.from_dict(meta["config"]) == SMALL
    s = meta["summary"]
    assert s["n_events"] == len(events) and s["n_sessions"] == events.session.nunique()
    assert s["behaviour_counts"] == {b: int((events.value == v).sum()) for v, b in enumerate(BEHAVIOURS)}
    assert 0.1 < s["click_rate"] < 0.5


def test_pscore_is_the_logging_propensity(truth: GroundTruth, events: pd.DataFrame) -> None:
    hist = click_histories(events, SMALL.history_window)
    np.testing.assert_allclose(truth.logging_propensity(hist, events.item.to_numpy()), events.pscore, rtol=1e-8)
    full = truth.logging_propensity(hist[:50], np.tile(np.arange(SMALL.n_items), (50, 1)))
    np.testing.assert_allclose(full.sum(axis=1), 1.0, rtol=1e-12)


# --- the model --------------------------------------------------------------------------


def test_click_probability_shapes_and_range(truth: GroundTruth) -> None:
    rng = np.random.default_rng(0)
    B, L, K = 7, 12, 5
    users = rng.integers(0, SMALL.n_users, B)
    hist = rng.integers(0, SMALL.n_items, (B, L))
    hist[:3, :6] = -1  # left padding
    hist[0] = -1  # empty history
    p1 = truth.click_probability(users, hist, hist[:, -1].clip(0))
    assert p1.shape == (B,)
    pk = truth.click_probability(users, hist, rng.integers(0, SMALL.n_items, (B, K)))
    assert pk.shape == (B, K)
    assert ((pk > 0) & (pk < 1)).all() and ((p1 > 0) & (p1 < 1)).all()
    # (B, K) agrees with K separate (B,) calls; an L=0 history equals an all-padding one
    items = rng.integers(0, SMALL.n_items, (B, K))
    batched = truth.click_probability(users, hist, items)
    for k in range(K):
        np.testing.assert_allclose(batched[:, k], truth.click_probability(users, hist, items[:, k]), rtol=1e-12)
    empty = np.zeros((B, 0), dtype=np.int64)
    np.testing.assert_allclose(truth.click_probability(users, empty, items),
                               truth.click_probability(users, np.full((B, 4), -1), items), rtol=1e-12)
    assert truth.exit_probability(np.arange(5)).shape == (5,)


def test_logit_terms_recompose_the_click_logit(truth: GroundTruth) -> None:
    rng = np.random.default_rng(3)
    B, L, K = 9, 10, 4
    users = rng.integers(0, SMALL.n_users, B)
    hist = rng.integers(0, SMALL.n_items, (B, L))
    hist[:4, :5] = -1
    hist[1] = -1  # no history: no transition term
    items = rng.integers(0, SMALL.n_items, (B, K))
    t = truth.logit_terms(users, hist, items)
    c = truth.config
    z = c.w_intercept + c.w_preference * t.preference + c.w_popularity * t.popularity \
        + c.w_transition * t.transition - c.w_satiation * t.satiation
    np.testing.assert_allclose(z, truth.click_logits(users, hist, items), rtol=1e-12)
    np.testing.assert_array_equal(t.popularity, truth.item_bias[items])
    assert (t.transition[1] == 0).all() and t.transition.any()
    np.testing.assert_allclose(t.satiation, truth.satiation(hist, items), rtol=1e-12)
    with pytest.raises(SeqrecError, match="items"):
        truth.logit_terms(users, hist, np.full(B, SMALL.n_items))


def test_click_probability_rejects_bad_input(truth: GroundTruth) -> None:
    users, hist, items = np.array([0, 1]), np.full((2, 3), -1), np.array([0, 1])
    with pytest.raises(SeqrecError, match="users"):
        truth.click_probability(np.array([0, SMALL.n_users]), hist, items)
    with pytest.raises(SeqrecError, match="items"):
        truth.click_probability(users, hist, np.array([0, -1]))
    with pytest.raises(SeqrecError, match="batch sizes"):
        truth.click_probability(users, hist[:1], items)
    with pytest.raises(SeqrecError, match="integer"):
        truth.click_probability(users, hist, np.array([0.5, 1.0]))


def test_satiation_lowers_click_probability(truth: GroundTruth) -> None:
    cats = truth.categories
    c = int(cats[0])
    same = np.flatnonzero(cats == c)
    target, fillers = same[0], same[1:]
    other = np.flatnonzero(cats != c)
    assert fillers.size >= 3
    base = other[:4]
    users = np.arange(20)
    h0 = np.tile(base, (20, 1))
    h_sat = np.tile(np.concatenate([base, np.resize(fillers, 6)]), (20, 1))
    p0 = truth.click_probability(users, h0, np.full(20, target))
    p1 = truth.click_probability(users, h_sat, np.full(20, target))
    assert (p1 < p0).all()
    # re-showing a just-clicked item is penalised more than another item of its category
    s = truth.satiation(np.array([[target]]), np.array([[target, fillers[0]]]))
    assert s[0, 0] > s[0, 1] > 0
    # recovery: clicks elsewhere after the run of same-category clicks raise it again
    h_rec = np.tile(np.concatenate([base, np.resize(fillers, 6), np.resize(other, 8)]), (20, 1))
    assert (truth.satiation(h_rec, np.full(20, target)) < truth.satiation(h_sat, np.full(20, target))).all()


def test_logged_clicks_follow_the_documented_model(truth: GroundTruth, events: pd.DataFrame) -> None:
    hist = click_histories(events, SMALL.history_window)
    p = truth.click_probability(events.user.to_numpy(), hist, events.item.to_numpy())
    clicks = (events.value >= 1).to_numpy()
    assert binomial_z(clicks.sum(), p.sum(), (p * (1 - p)).sum()) < 4
    # and by decile of the true probability (calibration of the log against the truth)
    bins = np.quantile(p, np.linspace(0, 1, 6))
    idx = np.clip(np.searchsorted(bins, p, side="right") - 1, 0, 4)
    for b in range(5):
        m = idx == b
        assert binomial_z(clicks[m].sum(), p[m].sum(), (p[m] * (1 - p[m])).sum()) < 4.5, b
    # satiation is visible in the log: a big satiation lowers the empirical click rate
    sat = truth.satiation(hist, events.item.to_numpy())
    assert clicks[sat > 1.5].mean() < clicks[sat == 0].mean()


def test_logged_funnel_follows_item_probabilities(truth: GroundTruth, events: pd.DataFrame) -> None:
    clicked = events[events.value >= 1]
    q = truth.cart_prob[clicked.item]
    assert binomial_z((clicked.value >= 2).sum(), q.sum(), (q * (1 - q)).sum()) < 4
    carted = events[events.value >= 2]
    q = truth.buy_prob[carted.item]
    assert binomial_z((carted.value == 3).sum(), q.sum(), (q * (1 - q)).sum()) < 4


def test_session_exit_follows_exit_probability(truth: GroundTruth, events: pd.DataFrame) -> None:
    user, sess, clicked = events.user.to_numpy(), events.session.to_numpy(), events.value.to_numpy() >= 1
    n = len(events)
    # misses after each step: consecutive non-clicks in the session, counting this step
    misses = np.zeros(n, dtype=np.int64)
    for r in range(n):
        if not clicked[r]:
            misses[r] = 1 + (misses[r - 1] if r > 0 and sess[r - 1] == sess[r] else 0)
    last_of_user = np.r_[user[1:] != user[:-1], True]
    exited = np.r_[sess[1:] != sess[:-1], True]
    per_user = np.bincount(user)
    truncated = last_of_user & (per_user[user] == SMALL.max_events_per_user)
    keep = ~truncated
    p = truth.exit_probability(misses[keep])
    assert binomial_z(exited[keep].sum(), p.sum(), (p * (1 - p)).sum()) < 4
    for lo, hi in [(0, 0), (1, 2), (3, 5), (6, 10_000)]:
        m = keep & (misses >= lo) & (misses <= hi)
        assert m.sum() > 100
        pm = truth.exit_probability(misses[m])
        assert binomial_z(exited[m].sum(), pm.sum(), (pm * (1 - pm)).sum()) < 4, (lo, hi)
    assert truth.exit_probability(np.array([0]))[0] < truth.exit_probability(np.array([8]))[0]


# --- persistence ------------------------------------------------------------------------


def test_load_round_trip_and_from_config(small_dir: Path, truth: GroundTruth, events: pd.DataFrame) -> None:
    regen = GroundTruth.from_config(SMALL)
    assert truth.config == SMALL
    hist = click_histories(events.iloc[:2000], SMALL.history_window)
    args = (events.user.to_numpy()[:2000], hist, events.item.to_numpy()[:2000])
    np.testing.assert_array_equal(truth.click_probability(*args), regen.click_probability(*args))
    np.testing.assert_array_equal(truth.click_probability(*args), generate(SMALL).truth.click_probability(*args))
    for name in ("item_vectors", "user_vectors", "transition", "categories", "popularity", "cart_prob"):
        np.testing.assert_array_equal(getattr(truth, name), getattr(regen, name))


def test_load_errors_are_one_line(tmp_path: Path, small_dir: Path) -> None:
    with pytest.raises(SeqrecError, match="missing"):
        GroundTruth.load(tmp_path / "nowhere")
    bad = tmp_path / "bad"
    bad.mkdir()
    data = (small_dir / "truth.npz").read_bytes()
    (bad / "truth.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(SeqrecError) as err:
        GroundTruth.load(bad)
    assert "corrupted" in str(err.value) and "\n" not in str(err.value)
    (bad / "truth.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(SeqrecError, match="corrupted"):
        GroundTruth.load(bad)


def test_config_validation() -> None:
    with pytest.raises(SeqrecError, match="n_users"):
        SynthConfig(n_users=0)
    with pytest.raises(SeqrecError, match="n_items"):
        SynthConfig(n_items=5, n_categories=10)
    with pytest.raises(SeqrecError, match="log_uniform"):
        SynthConfig(log_popularity=0.5, log_same_category=0.5, log_uniform=0.5)
    with pytest.raises(SeqrecError, match="satiation_decay"):
        SynthConfig(satiation_decay=1.0)
    with pytest.raises(SeqrecError, match="n_users"):
        SynthConfig(n_users=10.5)  # type: ignore[arg-type]
    with pytest.raises(SeqrecError, match="unknown"):
        SynthConfig.from_dict({"n_user": 3})
