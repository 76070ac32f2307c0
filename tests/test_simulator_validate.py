"""``seqrec simulator validate``: metrics on randomly exposed events, the policy ranking, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from seqrec.cli.main import main
from seqrec.data.prepare import prepare_dataset
from seqrec.simulators.config import SimulatorConfig
from seqrec.simulators.examples import ClickLog
from seqrec.simulators.simulator import UserSimulator, fit_simulator
from seqrec.simulators.validation import ExposedLog, policy_ranking

KEYS = {"auc", "log_loss", "ece", "mean_prediction", "positive_rate", "n", "baseline", "policy_ranking"}


def run(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _impressions_log(path: Path, n_users: int = 60, n_items: int = 30, per_user: int = 25, seed: int = 0) -> Path:
    """user,item,time,behaviour impressions whose click rate rises with a user-item affinity; string ids."""
    rng = np.random.default_rng(seed)
    taste, appeal = rng.normal(size=(n_users, 2)), rng.normal(size=(n_items, 2))
    lines = ["user,item,time,behaviour"]
    for u in range(n_users):
        for t, i in enumerate(rng.choice(n_items, per_user, replace=False)):
            p = 1 / (1 + np.exp(-(1.5 * taste[u] @ appeal[i] - 0.5)))
            lines.append(f"u{u},i{i},{1_600_000_000 + 60 * t},{'click' if rng.random() < p else 'impression'}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, UserSimulator, object]:
    """A simulator folder fitted on a small impressions log (its dataset lands in the test cache)."""
    root = tmp_path_factory.mktemp("validate")
    seq = prepare_dataset(_impressions_log(root / "log.csv"))
    sim = fit_simulator(seq, SimulatorConfig(epochs=3, dim=8, dim_search=(), max_history=10), root / "sim")
    return root / "sim", sim, seq


def _state_probability(sim: UserSimulator, seq, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """P(positive) of each (user, item) event, one event at a time (the test's own, unbatched path)."""
    clicks = ClickLog.build(seq, sim.config.negative_behaviours)
    out = []
    for u, i in zip(users, items):
        hist, beh = clicks.user_histories(np.array([u]), sim.max_history, upto="test")
        st = sim.initial_state(torch.tensor([u]), torch.from_numpy(hist), torch.from_numpy(beh))
        out.append(float(sim.click_probability(st, torch.tensor([i]))[0]))
    return np.array(out)


def _write_events(path: Path, users: list[str], items: list[str], clicked: list[bool]) -> Path:
    rows = [f"{u},{i},{'click' if c else 'impression'}" for u, i, c in zip(users, items, clicked)]
    path.write_text("user,item,behaviour\n" + "\n".join(rows) + "\n")  # no time column: file order
    return path


def test_metrics_equal_hand_computed_ones(capsys, tmp_path: Path, fitted) -> None:
    folder, sim, seq = fitted
    rng = np.random.default_rng(1)
    users = rng.integers(0, seq.n_users, 120)
    items = rng.integers(0, seq.n_items, 120)
    clicked = rng.random(120) < 0.3
    raw_u = [f"{seq.user_ids[u]}" for u in users] + ["u999", "u998"]  # two events of unknown users
    raw_i = [f"{seq.item_ids[i]}" for i in items] + ["i0", "i1"]
    raw_i[0] = "i777"  # and one of an unknown item
    log = _write_events(tmp_path / "random.csv", raw_u, raw_i, list(clicked) + [True, False])
    code, text, err = run(capsys, "simulator", "validate", str(folder), "--unbiased", str(log), "--out", str(tmp_path / "out"))
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "validation.json").read_text())
    assert set(report) == KEYS
    assert set(report["baseline"]) == KEYS - {"baseline", "policy_ranking"}
    counts = report["policy_ranking"]["unbiased_log"]
    assert (counts["events_read"], counts["dropped_unknown_user"], counts["dropped_unknown_item"], counts["events_kept"]) == (122, 2, 1, 119)

    p = _state_probability(sim, seq, users[1:], items[1:])
    y = clicked[1:].astype(float)
    pos, neg = p[y == 1], p[y == 0]
    auc = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg))
    pc = np.clip(p, 1e-7, 1 - 1e-7)
    log_loss = -np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc))
    bins = np.minimum((pc * 15).astype(int), 14)
    ece = sum(abs(pc[bins == b].mean() - y[bins == b].mean()) * (bins == b).sum() for b in np.unique(bins)) / len(y)
    assert report["n"] == 119
    assert report["auc"] == pytest.approx(auc, abs=2e-5)
    assert report["log_loss"] == pytest.approx(log_loss, abs=2e-5)
    assert report["ece"] == pytest.approx(ece, abs=2e-5)
    assert report["mean_prediction"] == pytest.approx(p.mean(), abs=2e-5)
    assert report["positive_rate"] == pytest.approx(y.mean(), abs=2e-5)
    assert report["baseline"]["n"] == 119 and 0 <= report["baseline"]["auc"] <= 1
    for name in ("reliability.png", "policies.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert "popularity" in text and "kendall" in text.lower()


def _sim_outcome_log(path: Path, sim: UserSimulator, seq, n_users: int, per_user: int, repeats: int, seed: int) -> Path:
    """A random-exposure log whose observed positive rate of each (user, item) pair is the
    simulator's own P(positive) rounded to 1 / repeats: a log built with the simulator's order."""
    rng = np.random.default_rng(seed)
    users = np.repeat(rng.choice(seq.n_users, n_users, replace=False), per_user)
    items = np.concatenate([rng.choice(seq.n_items, per_user, replace=False) for _ in range(n_users)])
    k = np.rint(_state_probability(sim, seq, users, items) * repeats).astype(int)
    rows = [f"{seq.user_ids[u]},{seq.item_ids[i]},{'click' if r < kk else 'impression'}"
            for u, i, kk in zip(users, items, k) for r in range(repeats)]  # fmt: skip
    path.write_text("user,item,behaviour\n" + "\n".join(rows) + "\n")
    return path


def _check_ranking(ranking: dict, repeats: int) -> None:
    values = ranking["policies"]
    for v in values.values():  # each pick's observed rate is its P within half a step
        assert abs(v["unbiased"] - v["simulated"]) <= 0.5 / repeats + 1e-5
    names = list(values)
    for a in names:
        for b in names:
            if values[a]["simulated"] - values[b]["simulated"] > 1.0 / repeats:
                assert values[a]["unbiased"] > values[b]["unbiased"], (a, b, values)
    assert values["oracle"]["simulated"] == max(v["simulated"] for v in values.values())


def test_policy_ranking_of_a_log_built_with_a_known_order(capsys, tmp_path: Path, fitted) -> None:
    folder, sim, seq = fitted
    log = _sim_outcome_log(tmp_path / "random.csv", sim, seq, n_users=30, per_user=6, repeats=50, seed=2)
    code, _, err = run(capsys, "simulator", "validate", str(folder), "--unbiased", str(log), "--out", str(tmp_path / "out"))
    assert code == 0, err
    ranking = json.loads((tmp_path / "out" / "validation.json").read_text())["policy_ranking"]
    assert set(ranking["policies"]) == {"random", "most-popular", "oracle"}
    assert set(ranking["skipped"]) == {"greedy", "linucb"}  # a bare simulator has no encoder
    _check_ranking(ranking, 50)
    assert ranking["kendall_tau"] is not None and ranking["kendall_tau"] > 0


def test_a_bundle_ranks_every_baseline(capsys, tmp_path: Path, tiny_bundle: Path) -> None:
    from seqrec.envs.bundle import load_bundle

    bundle = load_bundle(tiny_bundle)
    log = _sim_outcome_log(tmp_path / "random.csv", bundle.simulator, bundle.seq, n_users=40, per_user=8, repeats=40, seed=3)
    out = tmp_path / "out"
    code, _, err = run(capsys, "simulator", "validate", str(tiny_bundle), "--unbiased", str(log), "--out", str(out), "--block-users", "16")
    assert code == 0, err
    ranking = json.loads((out / "validation.json").read_text())["policy_ranking"]
    assert set(ranking["policies"]) == {"random", "most-popular", "greedy", "linucb", "oracle"} and not ranking["skipped"]
    _check_ranking(ranking, 40)
    # the blocks do not change the answer
    code, _, err = run(capsys, "simulator", "validate", str(tiny_bundle), "--unbiased", str(log), "--out", str(tmp_path / "o2"))
    assert code == 0, err
    assert json.loads((tmp_path / "o2" / "validation.json").read_text())["policy_ranking"]["policies"] == ranking["policies"]


def test_policy_ranking_values_and_correlations() -> None:
    # three users with two exposed pairs each; pair outcomes and P chosen by hand
    outcome = np.array([1, 0, 1, 0, 0, 1], float)
    p = np.array([0.2, 0.9, 0.3, 0.8, 0.4, 0.5])
    picks = {"a": np.array([0, 2, 5]), "b": np.array([1, 2, 4]), "c": np.array([1, 3, 4])}
    r = policy_ranking(picks, p, outcome)
    assert r["policies"]["a"] == {"simulated": pytest.approx(1.0 / 3, abs=1e-5), "unbiased": 1.0}
    assert r["policies"]["b"] == {"simulated": pytest.approx(0.5333333, abs=1e-5), "unbiased": pytest.approx(1 / 3, abs=1e-5)}
    assert r["policies"]["c"]["unbiased"] == 0.0
    assert r["kendall_tau"] == pytest.approx(-1.0) and r["spearman"] == pytest.approx(-1.0)  # the simulator ranks them backwards
    assert policy_ranking({"a": picks["a"]}, p, outcome)["kendall_tau"] is None


def test_no_overlap_is_a_one_line_error(capsys, tmp_path: Path, fitted) -> None:
    folder, _, _ = fitted
    log = _write_events(tmp_path / "other.csv", ["x1", "x2", "x3"], ["i1", "i2", "i3"], [True, False, True])
    out = tmp_path / "out"
    code, _, err = run(capsys, "simulator", "validate", str(folder), "--unbiased", str(log), "--out", str(out))
    assert code == 2 and err.startswith("seqrec: error: ") and err.count("\n") == 1
    assert "no event of the unbiased log" in err and not out.exists()


def test_bad_positive_rule_and_one_class_logs_are_one_line_errors(capsys, tmp_path: Path, fitted) -> None:
    folder, _, seq = fitted
    u, i = [str(x) for x in seq.user_ids[:3]], [str(x) for x in seq.item_ids[:3]]
    log = _write_events(tmp_path / "r.csv", u, i, [True, False, True])
    out = tmp_path / "out"
    code, _, err = run(capsys, "simulator", "validate", str(folder), "--unbiased", str(log), "--out", str(out), "--positive", "rating>=4")
    assert code == 2 and err.count("\n") == 1 and "--positive" in err and not out.exists()
    only = _write_events(tmp_path / "c.csv", u, i, [True, True, True])
    code, _, err = run(capsys, "simulator", "validate", str(folder), "--unbiased", str(only), "--out", str(out))
    assert code == 2 and err.count("\n") == 1 and "every event of the unbiased log is positive" in err and not out.exists()


def test_ratings_triplets_without_time_take_a_positive_rule(capsys, tmp_path: Path, fitted) -> None:
    folder, _, seq = fitted
    rng = np.random.default_rng(4)
    rows = [f"{seq.user_ids[u]}\t{seq.item_ids[i]}\t{rng.integers(1, 6)}" for u, i in
            zip(rng.integers(0, seq.n_users, 80), rng.integers(0, seq.n_items, 80))]  # fmt: skip
    log = tmp_path / "ratings.txt"
    log.write_text("\n".join(rows) + "\n")  # Coat / Yahoo! R3 style: user, item, rating; no header, no time
    out = tmp_path / "out"
    code, _, err = run(capsys, "simulator", "validate", str(folder), "--unbiased", str(log), "--columns", "user=0,item=1,value=2",
                       "--sep", "\\t", "--positive", "value>=4", "--out", str(out))  # fmt: skip
    assert code == 0, err
    report = json.loads((out / "validation.json").read_text())
    ratings = np.array([int(r.split("\t")[2]) for r in rows])
    assert report["n"] == 80 and report["positive_rate"] == pytest.approx((ratings >= 4).mean(), abs=1e-5)
    assert report["policy_ranking"]["unbiased_log"]["positive"] == "value>=4"


def test_exposed_log_groups_repeated_pairs() -> None:
    from seqrec.simulators.validation import pair_blocks

    log = ExposedLog(users=np.array([3, 5]), user_ptr=np.array([0, 1, 4]), items=np.array([2, 0, 1, 4]),
                     outcome=np.zeros(4), event_pair=np.arange(4), labels=np.zeros(4), counts={})  # fmt: skip
    (rows, idx, valid), = list(pair_blocks(log, 8))
    assert rows.tolist() == [0, 1] and idx.tolist() == [[0, 0, 0], [1, 2, 3]]
    assert valid.tolist() == [[True, False, False], [True, True, True]]


def test_trained_runs_are_ranked_too(capsys, tmp_path: Path, tiny_bundle: Path) -> None:
    from seqrec.envs.bundle import load_bundle

    config = tmp_path / "train.toml"
    config.write_text("n_steps = 16\neval_freq = 128\neval_episodes = 2\ncheckpoint_freq = 128\nnet_arch = [16]\n"
                      "[env]\nmax_episode_steps = 5\nn_candidates = 5\n")  # fmt: skip
    runs = []
    for algo, mode in (("ppo", "candidates"), ("a2c", "item")):  # 8 exposed items in 5 slots: a knockout of two rounds
        runs.append(tmp_path / f"{algo}-{mode}")
        code, _, err = run(capsys, "train", "--algo", algo, "--action-mode", mode, "--bundle", str(tiny_bundle), "--timesteps", "64",
                           "--n-envs", "4", "--out", str(runs[-1]), "--config", str(config))  # fmt: skip
        assert code == 0, err
    bundle = load_bundle(tiny_bundle)
    log = _sim_outcome_log(tmp_path / "random.csv", bundle.simulator, bundle.seq, n_users=20, per_user=8, repeats=20, seed=5)
    out = tmp_path / "out"
    code, _, err = run(capsys, "simulator", "validate", str(tiny_bundle), "--unbiased", str(log), "--out", str(out),
                       *[a for r in runs for a in ("--runs", str(r))])  # fmt: skip
    assert code == 0, err
    ranking = json.loads((out / "validation.json").read_text())["policy_ranking"]
    assert {r.name for r in runs} <= set(ranking["policies"])
    _check_ranking(ranking, 20)
    code, _, err = run(capsys, "simulator", "validate", str(tiny_bundle), "--unbiased", str(log), "--out", str(out), "--runs", str(tmp_path))
    assert code == 2 and "not a seqrec run folder" in err


def test_validate_option_defaults_are_the_config_defaults() -> None:
    import typer

    from seqrec.cli.main import app
    from seqrec.simulators.validation import ValidationConfig

    cmd = typer.main.get_command(app).commands["simulator"].commands["validate"]  # type: ignore[attr-defined]
    defaults = {p.name: p.default for p in cmd.params}
    assert defaults["seed"] == ValidationConfig.seed and defaults["block_users"] == ValidationConfig.block_users
    assert {"format", "columns", "sep", "positive", "runs"} <= set(defaults)


def test_users_with_fewer_exposed_items_in_an_earlier_block(capsys, tmp_path: Path, tiny_bundle: Path) -> None:
    """Blocks run narrowest first: a block of users with fewer exposed items than K must not
    leave its narrower candidates behind for the next, wider block (a shape error before)."""
    from seqrec.envs.bundle import load_bundle

    bundle = load_bundle(tiny_bundle)
    log = _sim_outcome_log(tmp_path / "random.csv", bundle.simulator, bundle.seq, n_users=40, per_user=8, repeats=4, seed=5)
    lines = log.read_text().splitlines()
    users = list(dict.fromkeys(line.split(",")[0] for line in lines[1:]))
    short = set(users[:20])  # half the users lose their last exposed item
    last = {u: [line.split(",")[1] for line in lines[1:] if line.split(",")[0] == u][-1] for u in short}
    kept = [line for line in lines[1:] if not (line.split(",")[0] in short and line.split(",")[1] == last[line.split(",")[0]])]
    log.write_text("\n".join([lines[0], *kept]) + "\n")
    out = tmp_path / "out"
    code, _, err = run(capsys, "simulator", "validate", str(tiny_bundle), "--unbiased", str(log), "--out", str(out), "--block-users", "16")
    assert code == 0, err
    report = json.loads((out / "validation.json").read_text())
    assert report["n"] == len(kept) and set(report["policy_ranking"]["policies"]) >= {"greedy", "oracle"}
