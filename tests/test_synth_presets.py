"""Synthetic regimes (``seqrec data synth --preset``): each log has its promised shape and its truth.

Small versions of every preset (overrides of the users / items); the default stays the
same bytes as before the presets existed.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seqrec.cli.main import main
from seqrec.data.ground_truth import GroundTruth
from seqrec.data.synth_config import SynthConfig
from seqrec.data.synth_presets import PRESETS, synth_preset
from seqrec.data.synthetic import generate, write_synthetic
from seqrec.infra.errors import SeqrecError

sys.path.insert(0, str(Path(__file__).parent))
from test_synthetic import FILES, binomial_z, click_histories  # noqa: E402

SMALL = {
    "default": {"n_users": 60, "n_items": 40, "seed": 7},
    "sessions": {"n_users": 1500, "seed": 1},
    "sparse-catalogue": {"n_users": 300, "n_items": 5000, "n_categories": 20, "seed": 1},
    "positives-only": {"n_users": 300, "n_items": 120, "n_categories": 8, "seed": 3},
    "funnel": {"n_users": 1000, "seed": 1},
}
"""A fast version of each preset (what the tests generate)."""

DEFAULT_SHA256 = {  # `seqrec data synth --users 60 --items 40 --seed 7` at 15733be, before the presets
    "events.csv": "4fe58dbc8efd52d42002908f99ca42d5595e58bd8bea6eeedbc844bad8150989",
    "items.csv": "c9b9ef4b19344ff3b128257daf65a1beed44eca021de4cdcb54e8da5085c4426",
    "synth.json": "908f155d68dd1739246d6350b993ed83b827717715e27054f1fa2c2cf0a49532",
    "truth.npz": "c03b57e71ad83791124595585bd66c8d74f37ebe7d9120ea6e2b87e740151109",
}
REGIME_FIELDS = ("popularity_zipf", "fav_prob", "max_sessions_per_user", "write_impressions", "behaviour_names")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("presets")
    return {name: write_synthetic(root / name, synth_preset(name, **kw)) for name, kw in SMALL.items()}


def read_events(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "events.csv")


def test_every_known_preset_is_a_valid_config_and_unknown_names_are_one_line(capsys) -> None:
    assert set(PRESETS) == set(SMALL) and synth_preset("default") == SynthConfig()
    for name, preset in PRESETS.items():
        cfg = synth_preset(name, seed=5)
        assert cfg.seed == 5 and all(getattr(cfg, k) == v for k, v in preset.overrides.items()), name
        assert SynthConfig.from_dict(cfg.to_dict()) == cfg
    assert synth_preset("sessions", n_users=10).n_users == 10
    with pytest.raises(SeqrecError, match="known: default, sessions, sparse-catalogue, positives-only, funnel"):
        synth_preset("session")
    assert main(["data", "synth", "--preset", "nope", "--out", "unused"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'nope'" in err and "funnel" in err
    assert main(["data", "synth", "--help"]) == 0
    squeeze = lambda text: "".join(c for c in text if not c.isspace() and c != "│")  # noqa: E731 (wrapped, boxed)
    help_text = squeeze(capsys.readouterr().out)
    assert all(squeeze(f"{name}: {p.summary}") in help_text for name, p in PRESETS.items())


def test_default_is_byte_identical_to_before_the_presets(capsys, tmp_path: Path) -> None:
    for args in ((), ("--preset", "default")):
        out = tmp_path / f"d{len(args)}"
        assert main(["data", "synth", "--users", "60", "--items", "40", "--seed", "7", *args, "--out", str(out)]) == 0
        for name, sha in DEFAULT_SHA256.items():
            assert hashlib.sha256((out / name).read_bytes()).hexdigest() == sha, (args, name)
    assert not set(REGIME_FIELDS) & set(SynthConfig().to_dict())


@pytest.mark.parametrize("name", list(SMALL))
def test_preset_is_deterministic_readable_and_keeps_its_truth(capsys, tmp_path: Path, folders: dict[str, Path],
                                                              name: str) -> None:
    folder, cfg = folders[name], synth_preset(name, **SMALL[name])
    again = write_synthetic(tmp_path / "again", cfg)
    for f in FILES:
        assert (again / f).read_bytes() == (folder / f).read_bytes(), f
    truth = GroundTruth.load(folder)
    assert truth.config == cfg and truth.n_items == cfg.n_items
    assert main(["data", "info", str(folder), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    summary = json.loads((folder / "synth.json").read_text())["summary"]
    assert info["n_interactions"] == summary["n_events"] == len(read_events(folder))
    assert info["behaviours"] == {b: c for b, c in summary["behaviour_counts"].items() if c}


@pytest.mark.parametrize("name", ["sessions", "positives-only", "funnel"])
def test_positives_only_logs_are_the_clicked_rows_of_the_full_process(folders: dict[str, Path], name: str) -> None:
    cfg = synth_preset(name, **SMALL[name])
    log, events = generate(cfg), read_events(folders[name])
    assert list(events.columns) == ["user", "item", "ts", "behaviour", "value", "session"]  # no pscore
    assert (events.value >= 1).all() and cfg.behaviour_names[0] not in set(events.behaviour)
    full = log.impressions
    clicked = full[full.value >= 1].drop(columns="pscore").reset_index(drop=True)
    pd.testing.assert_frame_equal(events, clicked, check_dtype=False)
    # the truth's history (the clicked items) is exactly what the written log holds
    hist_written = click_histories(events, cfg.history_window)
    hist_full = click_histories(full, cfg.history_window)[full.value.to_numpy() >= 1]
    np.testing.assert_array_equal(hist_written, hist_full)
    # and the full process follows the true click probability
    truth = GroundTruth.load(folders[name])
    p = truth.click_probability(full.user.to_numpy(), click_histories(full, cfg.history_window), full.item.to_numpy())
    clicks = (full.value >= 1).to_numpy()
    assert binomial_z(clicks.sum(), p.sum(), (p * (1 - p)).sum()) < 4
    if name == "positives-only":  # the same config with impressions writes these rows and the views
        with_views = generate(SynthConfig(**{**cfg.to_dict(), "write_impressions": True})).events
        pd.testing.assert_frame_equal(with_views, full)


def test_sessions_are_short_anonymous_sequences(folders: dict[str, Path]) -> None:
    events = read_events(folders["sessions"])
    per_user = events.groupby("user").size()
    assert 4 <= per_user.mean() <= 7
    assert (events.groupby("user").session.nunique() == 1).all()  # one session per user id
    assert events.groupby("session").user.nunique().max() == 1
    summary = json.loads((folders["sessions"] / "synth.json").read_text())["summary"]
    assert summary["n_session_limit"] + summary["n_truncated"] >= SMALL["sessions"]["n_users"]
    assert summary["n_churned"] == 0 and summary["n_users_in_log"] == len(per_user)


def test_sparse_catalogue_has_a_zipf_head_and_a_long_tail(folders: dict[str, Path]) -> None:
    assert synth_preset("sparse-catalogue").n_items >= 50_000
    folder, M = folders["sparse-catalogue"], SMALL["sparse-catalogue"]["n_items"]
    items = pd.read_csv(folder / "items.csv")
    assert len(items) == M
    pop = np.sort(items.popularity.to_numpy())[::-1]
    ranks = np.arange(1, M + 1)
    np.testing.assert_allclose(pop, ranks ** -1.0 / (ranks ** -1.0).sum(), rtol=1e-6)  # exactly Zipf(1)
    counts = np.sort(np.bincount(read_events(folder).item, minlength=M))[::-1]
    assert counts[: M // 100].sum() / counts.sum() > 0.2  # top 1% of items: uniform exposure would give 1%
    assert np.median(counts[counts > 0]) <= 3  # and most items that appear do so once or twice


def test_funnel_shares_and_stage_probabilities(folders: dict[str, Path]) -> None:
    events, truth = read_events(folders["funnel"]), GroundTruth.load(folders["funnel"])
    shares = events.behaviour.value_counts(normalize=True)
    assert list(shares.sort_values(ascending=False).index) == ["pv", "cart", "fav", "buy"]
    for b, want, tol in (("pv", 0.90, 0.02), ("cart", 0.05, 0.012), ("fav", 0.03, 0.01), ("buy", 0.02, 0.008)):
        assert abs(shares[b] - want) < tol, (b, shares[b])
    assert (events.behaviour.map({"pv": 1, "fav": 2, "cart": 3, "buy": 4}) == events.value).all()
    # every stage follows the item's true probability (all rows are clicks)
    stages = (("cart", events.value >= 3, events, truth.cart_prob),
              ("buy", events.value == 4, events[events.value >= 3], truth.buy_prob),
              ("fav", events.value == 2, events[events.value <= 2], truth.fav_prob))
    for name, hit, rows, q_all in stages:
        q = q_all[rows.item.to_numpy()]
        assert binomial_z(hit[rows.index].sum(), q.sum(), (q * (1 - q)).sum()) < 4, name


def test_regime_fields_are_checked_and_round_trip(tmp_path: Path, folders: dict[str, Path]) -> None:
    with pytest.raises(SeqrecError, match="needs 5 names"):
        SynthConfig(fav_prob=0.05)
    with pytest.raises(SeqrecError, match="distinct"):
        SynthConfig(behaviour_names=("view", "click", "click", "buy"))
    with pytest.raises(SeqrecError, match="True or False"):
        SynthConfig(write_impressions=0)  # type: ignore[arg-type]
    with pytest.raises(SeqrecError, match="max_sessions_per_user"):
        SynthConfig(max_sessions_per_user=-1)
    assert not GroundTruth.from_config(SynthConfig()).fav_prob.any()
    # a funnel truth without its fav_prob array is a corrupted file, said in one line
    bad = tmp_path / "bad"
    bad.mkdir()
    with np.load(folders["funnel"] / "truth.npz") as z:
        np.savez(bad / "truth.npz", **{k: z[k] for k in z.files if k != "fav_prob"})
    with pytest.raises(SeqrecError, match="missing array fav_prob"):
        GroundTruth.load(bad)
