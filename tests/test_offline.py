"""Offline evaluation on logged data: feedback from a bundle, CLI round trip, validation against truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from seqrec.cli.main import main
from seqrec.ope.logged_feedback import LoggedFeedback
from seqrec.agents.offline import ValidateConfig, action_distributions, feedback_from_bundle, validate
from seqrec.agents.policies import make_baseline
from seqrec.envs.bundle import load_bundle


def test_feedback_from_synthetic_bundle_uses_known_propensities(tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    fb = feedback_from_bundle(bundle)
    pos = bundle.seq.positions("test")
    assert fb.propensity_source == "known" and fb.n_rounds == len(pos)
    np.testing.assert_array_equal(fb.action, bundle.seq.items[pos])
    np.testing.assert_allclose(fb.pscore, bundle.seq.pscore[pos])
    assert set(np.unique(fb.reward)) <= {0.0, 1.0}
    assert fb.context.shape == (len(pos), bundle.encoder.config.dim)


def test_deterministic_policy_gives_one_hot_distributions(tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    users = np.arange(10)
    hist, beh = bundle.seq.user_histories(users, bundle.simulator.max_history, upto="valid")
    dist = action_distributions(make_baseline("most-popular"), bundle, users, hist, beh.astype(np.int64))
    assert dist.shape == (10, bundle.seq.n_items, 1)
    np.testing.assert_array_equal(dist.sum(axis=1)[:, 0], 1.0)
    assert set(np.unique(dist)) == {0.0, 1.0}
    uniform = action_distributions(make_baseline("random"), bundle, users, hist, beh.astype(np.int64))
    np.testing.assert_allclose(uniform, 1.0 / bundle.seq.n_items)


def test_validation_estimates_approach_the_truth(tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    res = validate(bundle, make_baseline("greedy"), ValidateConfig(rounds=(500, 20_000), repeats=3, n_bootstrap=200), progress=False)
    assert 0.0 < res["truth"] < 1.0
    err = {(r["rounds"], r["estimator"]): r["relative_error"] for r in res["rows"]}
    for est in ("snips", "dr"):
        assert err[(20_000, est)] < 0.15, est
        assert err[(20_000, est)] < err[(500, est)], est


def test_ope_cli_export_then_read_back(tiny_bundle: Path, tmp_path: Path, capsys) -> None:
    logs = tmp_path / "logs.parquet"
    assert main(["ope", "export", str(logs), "--bundle", str(tiny_bundle)]) == 0
    assert LoggedFeedback.from_parquet(logs).propensity_source == "known"
    out = tmp_path / "ope"
    code = main(["ope", "run", "--bundle", str(tiny_bundle), "--logs", str(logs), "--baselines", "random,greedy", "--out", str(out)])
    assert code == 0
    result = json.loads((out / "ope.json").read_text())
    assert set(result["estimates"]) == {"random", "greedy"}
    assert {"dm", "ips", "snips", "dr", "switch-dr", "replay"} <= set(result["estimates"]["random"])
    assert (out / "ope.png").stat().st_size > 0


def test_ope_cli_rejects_malformed_logs(tiny_bundle: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"action": [0, 1], "reward": [1.0, 0.0], "pscore": [0.5, 0.0]}).to_parquet(bad)
    code = main(["ope", "run", "--bundle", str(tiny_bundle), "--logs", str(bad), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "pscore" in err
