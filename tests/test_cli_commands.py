"""Every `seqrec` command run on tiny data, checking what it wrote; option defaults; log-friendly output."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import typer

from seqrec.cli.main import app, main


def run(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def tiny_log(tiny_bundle: Path) -> Path:
    """The synthetic log folder the tiny bundle was built from (150 users, 60 items)."""
    return tiny_bundle.parent / "data"


def _options(command: str) -> dict[str, object]:
    """{option name: default} of a top-level or grouped command ('prepare', 'simulator fit', …)."""
    click_cmd = typer.main.get_command(app)
    for part in command.split():
        click_cmd = click_cmd.commands[part]  # type: ignore[attr-defined]
    return {p.name: p.default for p in click_cmd.params}


def test_option_defaults_are_the_config_defaults() -> None:
    from seqrec.agents.evaluation import EvalConfig
    from seqrec.agents.offline import ValidateConfig
    from seqrec.data.preprocess import PrepConfig
    from seqrec.encoders.config import EncoderConfig, PretrainConfig
    from seqrec.envs.bundle import BuildConfig
    from seqrec.simulators.config import SimulatorConfig

    pairs = [
        ("prepare", "epochs", PretrainConfig, "epochs"), ("prepare", "precision", PretrainConfig, "precision"),
        ("prepare", "encoder", EncoderConfig, "encoder"), ("prepare", "min_value", PrepConfig, "min_value"),
        ("prepare", "time_budget", BuildConfig, "time_budget_s"), ("prepare", "threads", PretrainConfig, "threads"),
        ("pretrain", "epochs", PretrainConfig, "epochs"), ("pretrain", "dim", EncoderConfig, "dim"),
        ("pretrain", "max_len", EncoderConfig, "max_len"), ("pretrain", "lr", PretrainConfig, "lr"),
        ("pretrain", "patience", PretrainConfig, "patience"), ("pretrain", "dropout", EncoderConfig, "dropout"),
        ("simulator fit", "epochs", SimulatorConfig, "epochs"), ("simulator fit", "seed", SimulatorConfig, "seed"),
        ("data prepare", "min_user", PrepConfig, "min_user_interactions"), ("data prepare", "dedup", PrepConfig, "dedup"),
        ("evaluate", "episodes", EvalConfig, "episodes"), ("ope validate", "repeats", ValidateConfig, "repeats"),
    ]  # fmt: skip
    for command, option, cls, field in pairs:
        default = next(f.default for f in dataclasses.fields(cls) if f.name == field)
        assert _options(command)[option] == default, (command, option)
    assert _options("ope validate")["rounds"] == ",".join(map(str, ValidateConfig().rounds))


def test_every_command_shares_the_data_source_options() -> None:
    for command in ("prepare", "pretrain", "simulator fit", "data info", "data prepare", "encoder evaluate"):
        assert {"format", "columns", "sep"} <= set(_options(command)), command


def test_tables_in_a_log_are_plain_and_unwrapped(capsys, tiny_log: Path) -> None:
    code, out, _ = run(capsys, "data", "info", str(tiny_log))
    assert code == 0
    assert not set(out) & set("│┃━─┏┗"), "box drawing in a log"
    row = next(line for line in out.splitlines() if line.startswith("time_span"))
    assert "first_utc=" in row and "days=" in row  # the whole cell on its row, not wrapped below it


def test_progress_in_a_log_is_a_few_whole_lines() -> None:
    import io

    from seqrec.infra.progress import progress

    log = io.StringIO()
    with progress(total=5000, desc="pretrain", unit="batch", file=log) as bar:
        for i in range(5000):
            bar.update(1)
            bar.set_postfix(loss=i)
    text = log.getvalue()
    assert "\r" not in text and text.count("\n") <= 3
    assert text.splitlines()[-1].startswith("pretrain: 100%")


def test_sep_backslash_t_means_a_tab(capsys, tmp_path: Path) -> None:
    log = tmp_path / "log.csv"  # a .csv name, so only --sep says the separator is a tab
    log.write_text("uid\tsku\tt\n" + "".join(f"{u}\t{i}\t{i}\n" for u in range(4) for i in range(5)))
    code, out, err = run(capsys, "data", "prepare", str(log), "--columns", "user=uid,item=sku,time=t", "--sep", "\\t", "--json")
    assert code == 0, err
    assert json.loads(out)["split_targets"] == {"train": 8, "valid": 4, "test": 4}


def test_prepare_builds_a_bundle(capsys, tmp_path: Path, tiny_log: Path) -> None:
    out = tmp_path / "bundle"
    code, _, err = run(capsys, "prepare", str(tiny_log), "--out", str(out), "--epochs", "1", "--encoder", "gnn",
                       "--time-budget", "600", "--threads", "2")
    assert code == 0, err
    meta = json.loads((out / "bundle.json").read_text())
    assert meta["pretrain"]["threads"] == 2 and meta["budget"]["pretrain"]["max_seconds"] <= 0.5 * 600
    assert meta["pretrain"]["epochs"] == 1 and meta["encoder_config"]["encoder"] == "gnn"
    assert 100 < meta["n_users"] <= 150 and "auc" in json.dumps(meta["fidelity"])
    assert set(meta["stage_seconds"]) == {"data preparation", "encoder pretraining", "simulator fit", "fidelity report"}
    assert meta["budget"]["time_budget_s"] == 600.0 and meta["budget"]["pretrain"]["subsampled"] is False
    assert "simulator fit: dim" in err and "encoder pretraining done" in err
    for name in ("encoder.pt", "simulator.pt", "fidelity.json", "encoder_metrics.json"):
        assert (out / name).stat().st_size > 0, name
    code, _, err = run(capsys, "prepare", str(tmp_path / "missing"), "--out", str(tmp_path / "b2"))
    assert code == 2 and err.count("\n") == 1 and "missing" in err and not (tmp_path / "b2").exists()


@pytest.mark.parametrize("obs_mode", ["embedding", "ids"])
def test_train_then_evaluate_in_the_runs_env(capsys, tmp_path: Path, tiny_bundle: Path, obs_mode: str) -> None:
    run_dir = tmp_path / f"ppo-{obs_mode}"
    config = tmp_path / "train.toml"
    config.write_text("n_steps = 16\neval_freq = 128\neval_episodes = 4\ncheckpoint_freq = 128\nnet_arch = [16]\n"
                      "[env]\nmax_episode_steps = 7\nn_candidates = 5\n")  # fmt: skip
    code, _, err = run(capsys, "train", "--algo", "ppo", "--bundle", str(tiny_bundle), "--timesteps", "256", "--n-envs", "4",
                       "--obs-mode", obs_mode, "--out", str(run_dir), "--config", str(config))  # fmt: skip
    assert code == 0, err
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["obs_mode"] == obs_mode and saved["action_mode"] == "candidates"
    assert (run_dir / "final_model.zip").stat().st_size > 0 and (run_dir / "evaluations.npz").exists()
    out = tmp_path / "eval"
    code, text, err = run(capsys, "evaluate", str(run_dir), "--baselines", "random,oracle", "--episodes", "12", "--out", str(out))
    assert code == 0, err
    result = json.loads((out / "results.json").read_text())
    (table,) = result["tables"]
    assert table["env"] == {"obs_mode": obs_mode, "action_mode": "candidates", "max_episode_steps": 7, "n_candidates": 5}
    assert [r["policy"] for r in table["results"]] == [run_dir.name, "random", "oracle"]  # the run name says ppo already
    assert all(r["mean_length"] <= 7 for r in table["results"])  # the baselines met the run's episode length too
    assert "action_mode=candidates" in text and "max_episode_steps=7" in text
    assert (out / "comparison.png").stat().st_size > 0


def test_ope_run_without_a_user_column_stops(capsys, tmp_path: Path, tiny_bundle: Path) -> None:
    from seqrec.ope.logged_feedback import LoggedFeedback

    logs = tmp_path / "no-user.parquet"
    LoggedFeedback(action=np.array([0, 1, 2]), reward=np.array([1.0, 0.0, 1.0]), pscore=np.full(3, 0.5), n_actions=60).to_parquet(logs)
    out = tmp_path / "ope"
    code, _, err = run(capsys, "ope", "run", "--bundle", str(tiny_bundle), "--logs", str(logs), "--out", str(out))
    assert code == 2 and err.count("\n") == 1 and "'user' column" in err
    assert not (out / "ope.json").exists()


def test_ope_validate_writes_its_table(capsys, tmp_path: Path, tiny_bundle: Path) -> None:
    out = tmp_path / "validate"
    code, text, err = run(capsys, "ope", "validate", "--bundle", str(tiny_bundle), "--rounds", "300,3000", "--repeats", "2", "--out", str(out))
    assert code == 0, err
    res = json.loads((out / "validate.json").read_text())
    assert {r["rounds"] for r in res["rows"]} == {300, 3000} and 0 < res["truth"] < 1
    assert "relative error" in text and (out / "validate.png").stat().st_size > 0


def test_demo_on_a_small_log(capsys, tmp_path: Path, tiny_log: Path) -> None:
    out = tmp_path / "demo"
    code, text, err = run(capsys, "demo", "--data", str(tiny_log), "--out", str(out), "--timesteps", "512", "--episodes", "16")
    assert code == 0, err
    report = (out / "report.md").read_text()
    assert "| policy |" in report and "oracle" in report and "maskable-ppo" in report
    result = json.loads((out / "results.json").read_text())
    assert len(result["tables"][0]["results"]) == 6  # the agent and every baseline
    assert (out / "comparison.png").stat().st_size > 0 and (out / "bundle" / "bundle.json").exists()


def test_ope_run_flags_a_positives_only_log(capsys, tmp_path: Path, tiny_bundle: Path) -> None:
    from seqrec.envs.bundle import load_bundle
    from seqrec.ope.logged_feedback import LoggedFeedback

    n_users, n_items = load_bundle(tiny_bundle).seq.n_users, load_bundle(tiny_bundle).seq.n_items
    rng = np.random.default_rng(0)
    logs = tmp_path / "clicks.parquet"  # every logged event is a click, and the propensities are guesses
    LoggedFeedback(action=rng.integers(0, n_items, 400), reward=np.ones(400), pscore=np.full(400, 1 / n_items), n_actions=n_items,
                   user=rng.integers(0, n_users, 400), propensity_source="estimated").to_parquet(logs)  # fmt: skip
    out = tmp_path / "ope"
    code, text, err = run(capsys, "ope", "run", "--bundle", str(tiny_bundle), "--logs", str(logs), "--baselines", "greedy,random", "--out", str(out))
    assert code == 0, err
    result = json.loads((out / "ope.json").read_text())
    assert any("constant reward" in f for f in result["flags"]) and any("estimated from this same log" in f for f in result["flags"])
    greedy = result["estimates"]["greedy"]
    assert greedy["ips"]["ess"] < 100 and any("effective sample size" in f for f in greedy["ips"]["flags"])
    assert greedy["ips"]["max_weight"] == pytest.approx(n_items)
    assert "warning: constant reward" in text and "warning: greedy: effective sample size" in text


def _popularity_only_log(path: Path, n_users: int = 400, per_user: int = 12, n_items: int = 300, seed: int = 0) -> Path:
    """Every user draws items from one Zipf popularity, whatever they did before: nothing to learn beyond popularity."""
    rng = np.random.default_rng(seed)
    share = 1.0 / np.arange(1, n_items + 1) ** 1.1
    items = rng.choice(n_items, size=(n_users, per_user), p=share / share.sum())
    rows = [f"{u},{i},{1_600_000_000 + 60 * t}" for u in range(n_users) for t, i in enumerate(items[u])]
    path.write_text("user,item,ts\n" + "\n".join(rows) + "\n")
    return path


def test_prepare_refuses_a_simulator_no_better_than_popularity(capsys, tmp_path: Path) -> None:
    log = _popularity_only_log(tmp_path / "log.csv")
    out = tmp_path / "bundle"
    args = ("prepare", str(log), "--columns", "user=user,item=item,time=ts", "--out", str(out), "--epochs", "1")
    code, _, err = run(capsys, *args)
    (error,) = [line for line in err.splitlines() if line.startswith("seqrec: error")]  # beside the progress lines
    assert code == 2 and "popularity baseline" in error and "--allow-weak-simulator" in error
    assert not out.exists()  # nothing half-built; the report is kept beside it
    report = json.loads((tmp_path / "bundle.refused" / "fidelity.json").read_text())
    assert report["weak_simulator"] and report["click_model"]["popularity_auc"] is not None
    code, _, err = run(capsys, *args, "--allow-weak-simulator")
    assert code == 0, err
    meta = json.loads((out / "bundle.json").read_text())
    assert meta["allow_weak_simulator"] is True and meta["weak_simulator"]
    from seqrec.envs.bundle import Bundle

    Bundle.load(out)
    assert "weak simulator" in capsys.readouterr().err


def test_weak_simulator_reasons_name_the_metric() -> None:
    from seqrec.simulators.fidelity_checks import weak_simulator_problems

    fine = {"click_model": {"headline": "test_sampled", "vs_popularity": {"all": {"model_auc": 0.9, "popularity_auc": 0.8}},
                            "p_click": {"p05": 0.01, "p95": 0.6, "spread": 0.59}}}  # fmt: skip
    assert weak_simulator_problems(fine) == []
    below = json.loads(json.dumps(fine))
    below["click_model"]["vs_popularity"]["all"]["model_auc"] = 0.378
    flat = json.loads(json.dumps(fine))
    flat["click_model"]["p_click"] = {"p05": 0.2, "p95": 0.2001, "spread": 0.0001}
    assert "not above the popularity baseline's 0.800" in weak_simulator_problems(below)[0]
    assert "P(click) is degenerate" in weak_simulator_problems(flat)[0]
