"""Debiased fitting (``SimulatorConfig.debias``): IPS / SNIPS weights, the exposure model, the CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from seqrec.data.sequences import SPLIT_NAMES, SequenceData, SplitConfig, split_labels
from seqrec.infra.errors import SeqrecError
from seqrec.simulators import response_fit
from seqrec.simulators.calibration import calibration_rows
from seqrec.simulators.config import SimulatorConfig
from seqrec.simulators.examples import ClickLog
from seqrec.simulators.exposure import (PopularityExposure, batch_weights, debias_warnings, debias_weights, ips_weights,
                                        uniform_click_rate)
from seqrec.simulators.simulator import UserSimulator, fit_simulator

FAST = SimulatorConfig(dim=4, dim_search=(), max_history=10, epochs=3, batch_size=256, seed=0)

# the log biased by construction: each event has a hidden context c in {0, 1} (the time of
# day, say) that the model never sees; a user clicks an item of type c with P_MATCH, another
# with P_OTHER; the logging policy shows a type-c item with probability SHOW_MATCH.
P_MATCH, P_OTHER, SHOW_MATCH = 0.6, 0.1, 0.9
TRUE_RATE = (P_MATCH + P_OTHER) / 2  # under uniform random exposure, c and the item type are independent
LOGGED_RATE = SHOW_MATCH * P_MATCH + (1 - SHOW_MATCH) * P_OTHER


def biased_log(n_users: int = 240, n_items: int = 40, per_user: int = 30, seed: int = 0, pscore: bool = True) -> SequenceData:
    """A two-behaviour (view / click) log whose exposure depends on a context that drives the click."""
    rng = np.random.default_rng(seed)
    n = n_users * per_user
    users = np.repeat(np.arange(n_users), per_user)
    item_type = np.arange(n_items) % 2
    c = rng.integers(0, 2, n)
    match = rng.random(n) < SHOW_MATCH
    shown_type = np.where(match, c, 1 - c)
    items = 2 * rng.integers(0, n_items // 2, n) + shown_type
    click = rng.random(n) < np.where(item_type[items] == c, P_MATCH, P_OTHER)
    p = np.where(match, SHOW_MATCH, 1 - SHOW_MATCH) / (n_items // 2)  # pi_0(item | c)
    ptr = np.arange(0, n + 1, per_user)
    ts = np.tile(np.arange(per_user), n_users).astype(np.int64)
    return SequenceData(users=users.astype(np.int64), items=items.astype(np.int64), ts=ts, behaviours=click.astype(np.int8),
                        values=click.astype(np.float32), split=split_labels(ptr, ts, SplitConfig()), user_ptr=ptr, n_items=n_items,
                        behaviour_names=["view", "click"], user_ids=np.arange(n_users), item_ids=np.arange(n_items),
                        pscore=p.astype(np.float32) if pscore else None, meta={"key": f"biased-{seed}-{pscore}"})  # fmt: skip


def random_exposure_mean(sim: UserSimulator, seq: SequenceData, n: int = 4000, seed: int = 1) -> float:
    """Mean simulated P(click) of uniformly random items at the users' logged end states."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, seq.n_users, n)
    hist, beh = ClickLog.build(seq, sim.config.negative_behaviours).user_histories(users, sim.max_history, upto="valid")
    state = sim.initial_state(torch.from_numpy(users), torch.from_numpy(hist), torch.from_numpy(beh))
    return float(sim.click_probability(state, torch.from_numpy(rng.integers(0, seq.n_items, n))).mean())


@pytest.fixture(scope="module")
def seq() -> SequenceData:
    torch.set_num_threads(1)
    return biased_log()


# -- the weights --------------------------------------------------------------------------


def test_ips_weights_are_clipped_inverse_propensities():
    p = np.array([0.5, 0.1, 0.01, 0.001])
    assert np.allclose(ips_weights(p, 0.05, 10.0), [0.1, 0.5, 5.0, 10.0])  # 0.05 / 0.001 = 50, clipped at 10
    assert ips_weights(p, 0.05, 10.0).dtype == np.float32


def test_weights_of_a_pscore_column(seq):
    rows, _, _ = calibration_rows(seq, FAST, True)
    dw = debias_weights(seq, rows, "ips", 3.0)
    p = seq.pscore.astype(np.float64)
    ref = len(rows) / np.sum(1 / p[rows])  # harmonic mean over the training rows
    assert dw.record["propensity_source"] == "pscore column" and not dw.record["estimated_from_log"]
    assert np.isclose(dw.record["reference_propensity"], ref)
    assert np.allclose(dw.events, np.minimum(ref / p, 3.0))
    # a shown-type-c item: ref / (0.9 / 20), the other: ref / (0.1 / 20), which 3.0 clips
    assert np.isclose(ref, 1 / seq.n_items, rtol=0.05)
    assert dw.record["clipped_share"] == pytest.approx(np.mean(ref / p[rows] > 3.0), abs=1e-6) and 0.05 < dw.record["clipped_share"] < 0.15
    assert dw.record["weight_mass_kept"] == pytest.approx(np.minimum(ref / p[rows], 3.0).sum() / (ref / p[rows]).sum(), abs=1e-6)
    assert debias_weights(seq, rows, "none", 3.0) is None
    # a tight clip drops much of the weight of the rarely shown events: the fit says so
    tight = debias_weights(seq, rows, "ips", 1.0).record
    assert tight["weight_mass_kept"] < 0.8 and any("keeps" in w and "partial" in w for w in debias_warnings(tight))
    assert not debias_warnings(debias_weights(seq, rows, "ips", 10.0).record)


def test_uniform_click_rate_is_the_self_normalised_ips_rate():
    # clicks on over-exposed items (weight 0.5) and a miss on a rarely shown one (weight 4)
    assert uniform_click_rate(np.array([1, 1, 0, 0]), np.array([0.5, 0.5, 4.0, 1.0])) == pytest.approx(1.0 / 6.0)
    assert uniform_click_rate(np.array([1, 0]), np.array([1.0, 1.0])) == 0.5  # equal weights: the plain rate
    with pytest.raises(SeqrecError, match="at least one event"):
        uniform_click_rate(np.zeros(0), np.zeros(0))


def test_debiased_calibration_level_comes_from_every_train_event(seq):
    """The level is the IPS click rate of the whole train split (not of the small calibration
    sample), and the simulator's mean P(click) of uniform items at held-out states matches it."""
    sim = fit_simulator(seq, replace(FAST, debias="snips"))
    info = sim.info["response"]
    level = info["debias"]["level"]
    train = np.flatnonzero(seq.split == SPLIT_NAMES["train"])
    dw = debias_weights(seq, calibration_rows(seq, FAST, True)[0], "snips", FAST.debias_max_weight)
    y = ClickLog.build(seq, sim.config.negative_behaviours).positive
    assert level["events"] == len(train)
    assert level["uniform_click_rate"] == pytest.approx(np.dot(dw.unclipped[train], y[train]) / dw.unclipped[train].sum(), abs=1e-6)
    assert abs(level["uniform_click_rate"] - TRUE_RATE) < 0.03  # the IPS estimate of the truth
    assert "both halves" in info["calibration_set"] and sim.calibration.shift == pytest.approx(level["shift"], abs=1e-6)
    # the shift makes the mean over uniformly drawn items at the held-out states the level
    assert random_exposure_mean(sim, seq, n=8000) == pytest.approx(level["uniform_click_rate"], abs=0.02)
    naive = fit_simulator(seq, FAST).info["response"]
    assert naive["debias"] == {"method": "none"} and naive["calibration_set"].startswith("half of")


def test_snips_normalises_each_batch():
    w = torch.tensor([0.5, 1.0, 4.5])
    assert torch.equal(batch_weights(w, "ips"), w)
    assert torch.allclose(batch_weights(w, "snips"), w / 2.0)
    ell = torch.tensor([1.0, 2.0, 3.0])  # the SNIPS batch loss is sum(w * l) / sum(w)
    assert torch.isclose((batch_weights(w, "snips") * ell).mean(), (w * ell).sum() / w.sum())


def test_weights_reach_the_loss(seq, monkeypatch):
    seen: list[torch.Tensor] = []
    real = response_fit.batch_weights

    def spy(w: torch.Tensor, method: str) -> torch.Tensor:
        seen.append(w.clone())
        return real(w, method)

    monkeypatch.setattr(response_fit, "batch_weights", spy)
    cfg = replace(FAST, epochs=1, debias="ips", debias_max_weight=100.0)
    fit_simulator(seq, cfg)
    rows, _, _ = calibration_rows(seq, cfg, True)
    expected = debias_weights(seq, rows, "ips", 100.0).events[rows]
    got = torch.cat(seen).numpy()
    assert len(got) == len(rows)  # one epoch: every training row once, with its own weight
    assert np.allclose(np.sort(got), np.sort(expected))


def test_debias_none_ignores_pscore_and_constant_pscore_is_the_naive_fit(seq):
    base = fit_simulator(seq, FAST).model.state_dict()
    no_pscore = fit_simulator(replace(seq, pscore=None), replace(FAST, debias="none")).model.state_dict()
    for k in base:
        assert torch.equal(base[k], no_pscore[k]), k
    # IPS with the same propensity everywhere weighs every event 1: the naive fit again
    flat = fit_simulator(replace(seq, pscore=np.full(seq.n_events, 0.02, np.float32)), replace(FAST, debias="ips"))
    assert flat.info["response"]["debias"]["weight_max"] == pytest.approx(1.0)
    for k, v in flat.model.state_dict().items():
        assert torch.allclose(base[k], v, atol=1e-6), k
    assert fit_simulator(seq, FAST).info["response"]["debias"] == {"method": "none"}


def test_exposure_model_when_the_log_has_no_pscore(seq):
    bare = replace(seq, pscore=None)
    rows, _, _ = calibration_rows(bare, FAST, True)
    dw = debias_weights(bare, rows, "snips", 10.0)
    assert dw.record["propensity_source"] == "exposure model" and dw.record["estimated_from_log"]
    assert dw.record["exposure_model"]["name"] == "item popularity"
    counts = np.bincount(bare.items[rows], minlength=bare.n_items)
    p = (counts + 1) / (counts.sum() + bare.n_items)
    assert np.allclose(PopularityExposure.fit(bare.items[rows], bare.n_items).probs, p)
    ref = len(rows) / np.sum(1 / p[bare.items[rows]])
    assert np.allclose(dw.events, np.minimum(ref / p[bare.items], 10.0))
    # popular items weigh less than rare ones
    skew = np.where(np.arange(len(bare.items)) % 3 == 0, 0, bare.items)  # item 0 gets a third of the events
    dw = debias_weights(replace(bare, items=skew), rows, "ips", 10.0)
    assert dw.events[skew == 0].max() < dw.events[skew != 0].min()
    sim = fit_simulator(bare, replace(FAST, epochs=1, debias="ips"))
    assert sim.info["response"]["debias"]["propensity_source"] == "exposure model"


def test_debiased_fit_moves_the_mean_prediction_to_the_truth(seq):
    """The hidden context makes every logged item look like a LOGGED_RATE item; under random
    exposure the rate is TRUE_RATE. IPS with the logged pscore recovers it."""
    naive = random_exposure_mean(fit_simulator(seq, FAST), seq)
    ips = random_exposure_mean(fit_simulator(seq, replace(FAST, debias="ips")), seq)
    snips = random_exposure_mean(fit_simulator(seq, replace(FAST, debias="snips")), seq)
    assert abs(naive - LOGGED_RATE) < 0.06  # the naive fit reproduces the logged rate
    for debiased in (ips, snips):
        assert abs(debiased - TRUE_RATE) < 0.05 < abs(naive - TRUE_RATE) - 0.1


@pytest.mark.slow
def test_debiased_fit_on_the_synthetic_biased_log(tmp_path):
    """`seqrec data synth --exposure-bias 2 --random-exposure 10`, small: the logging policy shows
    what users like (logged click rate ~0.58, random exposure ~0.26); IPS and SNIPS move the
    mean P(click) of the random-exposure pairs toward their true mean."""
    import pandas as pd

    from seqrec.data.prepare import prepare_dataset
    from seqrec.data.synth_config import SynthConfig
    from seqrec.data.synthetic import RANDOM_EXPOSURE, write_synthetic

    folder = write_synthetic(tmp_path / "biased", SynthConfig(n_users=400, n_items=80, n_categories=8, max_events_per_user=50,
                                                              seed=4, exposure_bias=2.0, random_exposure=10))  # fmt: skip
    log = prepare_dataset(folder, cache_dir=tmp_path / "cache")
    r = pd.read_csv(folder / RANDOM_EXPOSURE)
    users, items = pd.Index(log.user_ids).get_indexer(r.user), pd.Index(log.item_ids).get_indexer(r.item)
    keep = (users >= 0) & (items >= 0)
    users, items, truth = users[keep], items[keep], r.truth.to_numpy()[keep]
    cfg = SimulatorConfig(dim=8, dim_search=(), max_history=20, epochs=4, batch_size=256)

    def mean_p(debias: str) -> float:
        sim = fit_simulator(log, replace(cfg, debias=debias))  # type: ignore[arg-type]
        hist, beh = ClickLog.build(log, sim.config.negative_behaviours).user_histories(users, sim.max_history)
        state = sim.initial_state(torch.from_numpy(users), torch.from_numpy(hist), torch.from_numpy(beh))
        return float(sim.click_probability(state, torch.from_numpy(items)).mean())

    naive = mean_p("none")
    assert naive > truth.mean() + 0.05  # the naive fit inherits the logging policy's bias
    for debias in ("ips", "snips"):
        assert abs(mean_p(debias) - truth.mean()) < abs(naive - truth.mean()) - 0.01, debias


def test_bad_pscore_and_bad_config_are_one_line_errors(seq):
    bad = seq.pscore.copy()
    bad[7] = np.nan
    with pytest.raises(SeqrecError, match=r"pscore column: 1 events .* event 7"):
        fit_simulator(replace(seq, pscore=bad), replace(FAST, debias="ips"))
    fit_simulator(replace(seq, pscore=bad), replace(FAST, epochs=1))  # debias none never reads it
    with pytest.raises(SeqrecError, match="SimulatorConfig.debias='ipw': must be one of none, ips, snips"):
        SimulatorConfig(debias="ipw")  # type: ignore[arg-type]
    with pytest.raises(SeqrecError, match="debias_max_weight"):
        SimulatorConfig(debias_max_weight=0.5)
    cfg = SimulatorConfig(debias="snips", debias_max_weight=5.0)
    assert SimulatorConfig.from_dict(cfg.to_dict()) == cfg
    old = cfg.to_dict()
    del old["debias"], old["debias_max_weight"]  # a checkpoint's config from before the option
    assert SimulatorConfig.from_dict(old).debias == "none"


# -- the CLI --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synth_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from seqrec.data.synth_config import SynthConfig
    from seqrec.data.synthetic import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("debias") / "data", SynthConfig(n_users=100, n_items=40, n_categories=4,
                                                                                   max_events_per_user=40, seed=2))


def test_fit_command_records_debias_in_fidelity_json(synth_log, tmp_path, capsys):
    from seqrec.cli.main import main

    out = tmp_path / "sim"
    assert main(["simulator", "fit", str(synth_log), "--out", str(out), "--epochs", "1", "--debias", "snips",
                 "--debias-max-weight", "4", "--json"]) == 0
    capsys.readouterr()
    report = json.loads((out / "fidelity.json").read_text())
    d = report["debias"]
    assert d["method"] == "snips" and d["propensity_source"] == "pscore column" and d["max_weight"] == 4.0
    assert d["calibration_weighted"] and 0 < d["effective_sample_share"] <= 1 and d["weight_max"] <= 4.0
    assert report["command"]["argv"][-4:] == ["--debias", "snips", "--debias-max-weight", "4"]
    assert UserSimulator.load(out).config.debias == "snips"


def test_unknown_debias_is_a_one_line_error(synth_log, tmp_path, capsys):
    from seqrec.cli.main import main

    assert main(["simulator", "fit", str(synth_log), "--out", str(tmp_path / "x"), "--debias", "ipw"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "debias" in err and "none, ips, snips" in err
    assert not (tmp_path / "x").exists()


def test_prepare_passes_debias_to_the_simulator(synth_log, tmp_path, monkeypatch):
    import seqrec.envs.bundle as bundle
    from seqrec.cli.main import main

    got = {}
    monkeypatch.setattr(bundle, "build_bundle", lambda data, out, cfg: got.setdefault("cfg", cfg) and out)
    assert main(["prepare", str(synth_log), "--out", str(tmp_path / "b"), "--debias", "ips"]) == 0
    assert got["cfg"].simulator.debias == "ips"
    assert main(["prepare", str(synth_log), "--out", str(tmp_path / "b"), "--debias", "bogus"]) == 2


def test_debias_options_default_to_the_config():
    import typer

    from seqrec.cli.main import app

    root = typer.main.get_command(app)
    for cmd in (root.commands["prepare"], root.commands["simulator"].commands["fit"]):  # type: ignore[attr-defined]
        defaults = {p.name: p.default for p in cmd.params}
        assert defaults["debias"] == SimulatorConfig().debias == "none"
    fit = {p.name: p.default for p in root.commands["simulator"].commands["fit"].params}  # type: ignore[attr-defined]
    assert fit["debias_max_weight"] == SimulatorConfig().debias_max_weight
