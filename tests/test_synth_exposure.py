"""Synthetic ground truth for debiasing (issue 17): a biased logging policy and a random-exposure log."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chisquare

from seqrec.cli.main import main
from seqrec.data.ground_truth import GroundTruth
from seqrec.data.prepare import prepare_dataset
from seqrec.data.preprocess import PrepConfig
from seqrec.data.synth_config import SynthConfig
from seqrec.data.synthetic import RANDOM_EXPOSURE, generate, write_synthetic
from seqrec.infra.errors import SeqrecError

sys.path.insert(0, str(Path(__file__).parent))
from test_synthetic import binomial_z, click_histories  # noqa: E402

SMALL = dict(n_users=300, n_items=80, n_categories=8, seed=2)
K = 16


@pytest.fixture(scope="module")
def biased(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("exposure") / "biased", SynthConfig(**SMALL, exposure_bias=1.5, random_exposure=K))


def _end_histories(events: pd.DataFrame, n_users: int, window: int) -> np.ndarray:
    """Every user's last ``window`` clicked items at the end of the log, left-padded with -1, shape (N, W)."""
    out = np.full((n_users, window), -1, np.int64)
    for user, group in events[events.value >= 1].groupby("user"):
        items = group["item"].to_numpy()[-window:]
        out[user, window - len(items):] = items
    return out


def test_bias_strength_moves_exposure_toward_likely_clicks() -> None:
    truth = GroundTruth.from_config(SynthConfig(**SMALL))
    rng = np.random.default_rng(0)
    users, hist = rng.integers(0, SMALL["n_users"], 64), rng.integers(-1, SMALL["n_items"], (64, 20))
    p = truth.click_probability(users, hist, np.tile(np.arange(SMALL["n_items"]), (64, 1)))
    expected, click_rate = [], []
    for s in (0.0, 0.5, 1.5, 3.0):
        t = GroundTruth.from_config(SynthConfig(**SMALL, exposure_bias=s))
        pi = t.exposure_probabilities(users, hist)
        np.testing.assert_allclose(pi.sum(axis=1), 1.0, rtol=1e-12)
        if s == 0:  # S = 0 is the documented pi_0 itself
            np.testing.assert_allclose(pi, truth.logging_propensity(hist, np.tile(np.arange(SMALL["n_items"]), (64, 1))))
        expected.append(float((pi * p).sum(axis=1).mean()))  # E_pi[true P(click)] of a shown item
        click_rate.append(generate(SynthConfig(**SMALL, exposure_bias=s)).summary["click_rate"])
    assert all(a < b for a, b in zip(expected, expected[1:])), expected
    assert all(a < b for a, b in zip(click_rate, click_rate[1:])), click_rate
    assert click_rate[-1] > click_rate[0] + 0.1


def test_biased_pscore_is_the_tilted_policy_of_the_shown_item(biased: Path) -> None:
    truth = GroundTruth.load(biased)
    events = pd.read_csv(biased / "events.csv")
    assert truth.config.exposure_bias == 1.5 and "pscore" in events.columns
    hist = click_histories(events, truth.config.history_window)
    want = truth.logging_propensity(hist, events.item.to_numpy(), users=events.user.to_numpy())
    np.testing.assert_allclose(events.pscore.to_numpy(), want, rtol=1e-8)
    assert ((events.pscore > 0) & (events.pscore <= 1)).all()
    with pytest.raises(SeqrecError, match="needs users"):
        truth.logging_propensity(hist[:3], events.item.to_numpy()[:3])


def test_catalogue_logits_match_the_batched_model() -> None:
    truth = GroundTruth.from_config(SynthConfig(**SMALL))
    rng = np.random.default_rng(1)
    users, hist = rng.integers(0, SMALL["n_users"], 40), rng.integers(-1, SMALL["n_items"], (40, 60))
    hist[:5] = -1  # rows without a click
    logits, _ = truth._catalogue_logits(users, hist)
    np.testing.assert_allclose(logits, truth.click_logits(users, hist, np.tile(np.arange(SMALL["n_items"]), (40, 1))), atol=1e-10)


def test_random_exposure_log_has_k_distinct_uniform_items_per_user_with_true_outcomes(biased: Path) -> None:
    truth = GroundTruth.load(biased)
    rand = pd.read_csv(biased / RANDOM_EXPOSURE)
    assert list(rand.columns) == ["user", "item", "ts", "behaviour", "value", "truth"]
    n_users, n_items = SMALL["n_users"], SMALL["n_items"]
    assert (rand.groupby("user")["item"].nunique() == K).all() and len(rand) == n_users * K
    # uniform over the catalogue: each item is in a user's set with probability K / M
    counts = np.bincount(rand.item, minlength=n_items)
    assert chisquare(counts).pvalue > 1e-3
    # the outcomes are drawn from the truth column, which is the true P(click) at the end of the log
    events = pd.read_csv(biased / "events.csv")
    end = _end_histories(events, n_users, truth.config.history_window)
    p = truth.click_probability(rand.user.to_numpy(), end[rand.user.to_numpy()], rand.item.to_numpy())
    np.testing.assert_allclose(rand.truth.to_numpy(), p, rtol=1e-8)
    assert binomial_z(rand.value.sum(), p.sum(), (p * (1 - p)).sum()) < 4
    assert set(zip(rand.value, rand.behaviour)) <= {(0, "view"), (1, "click")}
    assert (rand.groupby("user")["ts"].min() > events.groupby("user")["ts"].max()).all()  # after the logged history
    summary = json.loads((biased / "synth.json").read_text())["summary"]["random_exposure"]
    assert summary["n_events"] == len(rand) and summary["per_user"] == K
    # the biased log over-represents likely clicks; the random one is the truth's own rate
    assert json.loads((biased / "synth.json").read_text())["summary"]["click_rate"] > rand.truth.mean() + 0.1


@pytest.mark.parametrize("rule", ["value>=1", "behaviour==click"])
def test_random_exposure_log_is_readable_with_positive(biased: Path, rule: str) -> None:
    rand = pd.read_csv(biased / RANDOM_EXPOSURE)
    seq = prepare_dataset(biased / RANDOM_EXPOSURE, prep=PrepConfig(positive=rule), use_cache=False)
    assert seq.n_events == len(rand) and seq.meta["report"]["positive"]["positive"] == int(rand.value.sum())
    names = np.asarray(seq.behaviour_names)[seq.behaviours]
    assert set(names) <= {"click", "negative"} and (names == "click").sum() == rand.value.sum()


def test_random_exposure_leaves_the_log_and_the_default_bytes_alone(tmp_path: Path, capsys) -> None:
    base = ["data", "synth", "--users", "60", "--items", "40", "--seed", "7"]
    assert main([*base, "--out", str(tmp_path / "plain")]) == 0
    assert main([*base, "--exposure-bias", "0", "--random-exposure", "0", "--out", str(tmp_path / "zero")]) == 0
    assert main([*base, "--random-exposure", "5", "--out", str(tmp_path / "rand")]) == 0
    sha = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    for name in ("events.csv", "items.csv", "truth.npz", "synth.json"):
        assert sha(tmp_path / "zero" / name) == sha(tmp_path / "plain" / name), name
    for name in ("events.csv", "items.csv"):  # a third random stream: the biased-log part does not move
        assert sha(tmp_path / "rand" / name) == sha(tmp_path / "plain" / name), name
    assert not (tmp_path / "plain" / RANDOM_EXPOSURE).exists()
    meta = json.loads((tmp_path / "rand" / "synth.json").read_text())
    assert RANDOM_EXPOSURE in meta["files"] and meta["config"]["random_exposure"] == 5
    assert SynthConfig.from_dict(meta["config"]) == GroundTruth.load(tmp_path / "rand").config
    capsys.readouterr()
    assert main([*base, "--random-exposure", "41", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "random_exposure" in err and "n_items" in err
    assert main([*base, "--exposure-bias", "-1", "--out", str(tmp_path / "bad")]) == 2
