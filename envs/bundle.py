"""Bundles: one folder with everything an environment needs.

=================== ==========================================================
``bundle.json``     format version, source, dataset key, every option used
``dataset/``        the prepared dataset (sequences, id maps, item features)
``encoder.pt``      the pretrained sequence encoder (+ ``encoder_metrics.json``)
``simulator.pt``    the fitted user simulator
``fidelity.json``   the simulator's fidelity report (+ PNG plots)
=================== ==========================================================

``seqrec prepare DATA --out DIR`` builds one; ``gymnasium.make("SeqRec-v0", bundle=DIR)``
loads one. With no bundle, :func:`default_bundle` builds one from the synthetic default
dataset on first use and caches it; a file lock and an atomic rename keep concurrent
first calls from corrupting it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from filelock import FileLock

from seqrec.infra.errors import CheckpointError, SeqrecError
from seqrec.data.prepare import cache_root, prepare_dataset
from seqrec.data.ground_truth import GroundTruth
from seqrec.data.preprocess import PrepConfig
from seqrec.infra.threads import torch_threads
from seqrec.data.sequences import SequenceData
from seqrec.encoders.config import EncoderConfig, PretrainConfig
from seqrec.encoders.model import SequenceEncoder
from seqrec.encoders.train import pretrain
from seqrec.simulators.config import SimulatorConfig
from seqrec.simulators.fidelity import fidelity_report
from seqrec.simulators.simulator import UserSimulator, fit_simulator
from seqrec.envs import side_fit
from seqrec.envs.side_fit import epoch_lines

BUNDLE_FORMAT = 1


class WeakSimulatorError(SeqrecError):
    """The simulator fitted for a bundle is no better than popularity, or its P(click) is constant."""
DEFAULT_BUNDLE_NAME = f"default-synthetic-v{BUNDLE_FORMAT}"


@dataclass
class Bundle:
    """A loaded bundle: the dataset, the frozen encoder and the simulator."""

    folder: Path
    seq: SequenceData
    encoder: SequenceEncoder
    simulator: UserSimulator
    meta: dict = field(default_factory=dict)

    @classmethod
    def load(cls, folder: str | Path) -> "Bundle":
        """Load ``folder``; one-line error when it is not a complete bundle."""
        folder = Path(folder)
        try:
            meta = json.loads((folder / "bundle.json").read_text())
        except (OSError, ValueError) as err:
            raise CheckpointError(f"{folder}: not a seqrec bundle (bundle.json: {err})") from None
        if meta.get("format") != BUNDLE_FORMAT:
            raise CheckpointError(f"{folder}: bundle format {meta.get('format')} is not {BUNDLE_FORMAT}; rebuild it with seqrec prepare")
        seq = SequenceData.load(folder / "dataset")
        key = meta["dataset_key"]
        encoder = SequenceEncoder.load(folder / "encoder.pt", dataset_key=key).eval()
        simulator = UserSimulator.load(folder / "simulator.pt", dataset_key=key)
        for problem in meta.get("weak_simulator") or ():
            print(f"seqrec: warning: {folder}: weak simulator (built with --allow-weak-simulator): {problem}", file=sys.stderr)
        return cls(folder, seq, encoder, simulator, meta)


_LOADED: dict[Path, Bundle] = {}


def load_bundle(bundle: str | Path | None) -> Bundle:
    """The bundle at ``bundle`` (or the default one), loaded once per process."""
    folder = Path(bundle).resolve() if bundle is not None else default_bundle()
    if folder not in _LOADED:
        _LOADED[folder] = Bundle.load(folder)
    return _LOADED[folder]


@dataclass
class BuildConfig:
    """Everything :func:`build_bundle` needs beyond the data path."""

    format: str | None = None
    columns: str | None = None
    sep: str | None = None
    prep: PrepConfig = field(default_factory=PrepConfig)
    encoder: dict = field(default_factory=dict)
    """Overrides of :class:`EncoderConfig` fields (``n_items`` is set from the data)."""
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)
    seed: int = 0
    time_budget_s: float | None = 2700.0
    """Wall-clock budget of the whole build (45 minutes; None: none). What is left after data
    preparation goes ``PRETRAIN_SHARE`` to encoder pretraining, then ``SIMULATOR_SHARE`` of the
    rest to the simulator fit, whose epochs are subsampled to fit (:mod:`seqrec.infra.budget`);
    a log the size of ML-100K never reaches it. ``bundle.json`` records the stage times and
    whether any stage subsampled. A budget set in ``pretrain.max_seconds`` or
    ``simulator.max_seconds`` wins for that stage."""
    parallel_fits: bool | None = None
    """Fit the simulator in a second process while the encoder pretrains (they are independent).
    None: when the cores allow two stages of ``pretrain.threads`` threads and the log is of a
    size where it pays (:func:`seqrec.envs.side_fit.parallel_fits`); the results are the same
    either way. ``bundle.json`` → ``parallel_stages`` says which stages ran beside another."""
    allow_weak_simulator: bool = False
    """Build the bundle even when its simulator cannot tell policies apart (click AUC not above
    popularity's, or a constant P(click)); the reasons go into ``bundle.json`` and every load warns."""


def build_bundle(data: str | Path, out: str | Path, config: BuildConfig = BuildConfig(), progress: bool = True) -> Path:
    """Prepare ``data``, pretrain the encoder, fit the simulator and write a bundle to ``out``.

    Built in a temporary sibling folder and renamed into place at the end, so an
    interrupted build never leaves a half-written bundle.
    """
    with torch_threads(config.pretrain.threads):  # the simulator fit and the report too
        return _build_bundle(data, Path(out), config, progress)


PRETRAIN_SHARE = 0.5
"""Share of the build's time budget (after data preparation) that encoder pretraining may use."""
SIMULATOR_SHARE = 0.7
"""Share of what is left after pretraining that the simulator fit may use (the rest: the report)."""


class _Stages:
    """Wall-clock seconds of each build stage, and what is left of the budget."""

    def __init__(self, budget: float | None, progress: bool):
        self.budget, self.progress, self.t0, self.seconds = budget, progress, time.perf_counter(), {}
        self.parallel: list[str] = []
        self._last = self.t0

    def done(self, name: str, own: float | None = None) -> None:
        """``name`` finished now; ``own``: its own seconds when it ran beside the previous stage
        (then the wait for it is not a stage of its own: ``parallel`` lists it)."""
        now = time.perf_counter()
        self.seconds[name] = round(now - self._last if own is None else own, 1)
        if own is not None:
            self.parallel.append(name)
        self._last = now
        if self.progress:
            beside = " (beside the previous stage)" if own is not None else ""
            print(f"prepare: {name} done in {self.seconds[name]:.0f} s{beside}", file=sys.stderr, flush=True)

    def share(self, fraction: float, own: float | None) -> float | None:
        """A stage's budget: its own setting, else ``fraction`` of what is left (at least 1 s)."""
        if own is not None or self.budget is None:
            return own
        return max(1.0, fraction * (self.budget - (time.perf_counter() - self.t0)))


def _build_bundle(data: str | Path, out: Path, config: BuildConfig, progress: bool) -> Path:
    stages = _Stages(config.time_budget_s, progress)
    seq = prepare_dataset(data, format=config.format, columns=config.columns, sep=config.sep, prep=config.prep)
    stages.done("data preparation")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        seq.save(_mkdir(tmp / "dataset"))
        enc_cfg, enc_metrics, simulator = _fit_models(seq, config, tmp, stages, progress)
        fidelity = fidelity_report(simulator, seq, tmp, truth=GroundTruth.of_log(data))
        stages.done("fidelity report")
        weak = fidelity["weak_simulator"]
        if weak and not config.allow_weak_simulator:
            raise WeakSimulatorError(f"{data}: the fitted simulator cannot tell policies apart: {weak[0]}"
                                     f"{f' (and {len(weak) - 1} more)' if len(weak) > 1 else ''}; see {_refused(out) / 'fidelity.json'} "
                                     "for the report, or pass --allow-weak-simulator to build it anyway")  # fmt: skip
        meta = {
            "format": BUNDLE_FORMAT, "source": str(data), "dataset_key": seq.meta["key"], "n_users": seq.n_users,
            "n_items": seq.n_items, "behaviours": seq.behaviour_names, "encoder_config": enc_cfg.to_dict(),
            "pretrain": asdict(config.pretrain), "simulator": asdict(config.simulator), "prep": asdict(config.prep),
            "encoder_test_metrics": enc_metrics.get("test", enc_metrics), "fidelity": _headline(fidelity),
            "build_seconds": round(time.perf_counter() - stages.t0, 1), "stage_seconds": stages.seconds,
            "parallel_stages": stages.parallel,
            "budget": {"time_budget_s": config.time_budget_s, "pretrain": enc_metrics.get("budget"),
                       "simulator": simulator.info["response"].get("budget")},
            "weak_simulator": weak,
            "allow_weak_simulator": config.allow_weak_simulator,
        }  # fmt: skip
        (tmp / "bundle.json").write_text(json.dumps(meta, indent=2, default=str))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except WeakSimulatorError:
        _keep_report(tmp, out)
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _fit_models(seq: SequenceData, config: BuildConfig, tmp: Path, stages: _Stages, progress: bool
                ) -> tuple[EncoderConfig, dict, UserSimulator]:
    """Pretrain the encoder and fit the simulator into ``tmp``, side by side when
    :func:`~seqrec.envs.side_fit.parallel_fits` says so (each then gets the pretraining share of the budget)."""
    enc_cfg = EncoderConfig(**{"n_items": seq.n_items, **_feature_defaults(seq), **config.encoder})
    pre_cfg = replace(config.pretrain, progress=progress, max_seconds=stages.share(PRETRAIN_SHARE, config.pretrain.max_seconds))
    if not side_fit.parallel_fits(config.parallel_fits, seq.n_events, config.pretrain.threads):
        enc_metrics = _pretrain(seq, enc_cfg, pre_cfg, tmp, stages)
        sim_cfg = replace(config.simulator, max_seconds=stages.share(SIMULATOR_SHARE, config.simulator.max_seconds))
        simulator = fit_simulator(seq, sim_cfg, tmp, on_epoch=epoch_lines(progress))
        stages.done("simulator fit")
        return enc_cfg, enc_metrics, simulator
    side_cfg = replace(config.simulator, max_seconds=stages.share(PRETRAIN_SHARE, config.simulator.max_seconds))
    side = side_fit.start(tmp / "dataset", side_cfg, tmp, config.pretrain.threads, progress)
    try:
        enc_metrics = _pretrain(seq, enc_cfg, pre_cfg, tmp, stages)
        simulator, fit_s = side.wait()
    except BaseException:  # an interrupt or a failed stage: the child must not write on
        side.stop()
        raise
    stages.done("simulator fit", own=fit_s)
    return enc_cfg, enc_metrics, simulator


def _pretrain(seq: SequenceData, enc_cfg: EncoderConfig, pre_cfg: PretrainConfig, tmp: Path, stages: _Stages) -> dict:
    enc_metrics = pretrain(seq, enc_cfg, pre_cfg, tmp)
    os.replace(tmp / "metrics.json", tmp / "encoder_metrics.json")
    stages.done("encoder pretraining")
    return enc_metrics


def _refused(out: Path) -> Path:
    return out.with_name(out.name + ".refused")


def _keep_report(tmp: Path, out: Path) -> None:
    """A refused build keeps only its fidelity report and plots, in ``<out>.refused/``; ``out`` is untouched."""
    report = _refused(out)
    shutil.rmtree(report, ignore_errors=True)
    report.mkdir(parents=True)
    for f in [tmp / "fidelity.json", *tmp.glob("*.png")]:
        shutil.move(str(f), report / f.name)
    shutil.rmtree(tmp, ignore_errors=True)


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def _feature_defaults(seq: SequenceData) -> dict:
    """Use behaviour types and item side features when the data has them."""
    return {"n_behaviours": len(seq.behaviour_names) if len(seq.behaviour_names) > 1 else 0}


def _headline(fidelity: dict) -> dict:
    """The fidelity numbers worth a glance (the full report is fidelity.json)."""
    click, truth = fidelity.get("click_model", {}), fidelity.get("ground_truth") or {}
    picks = {"click_auc": click.get("auc"), "click_ece": click.get("ece"), "click_log_loss": click.get("log_loss"),
             "spearman_click_vs_truth": truth.get("spearman_click"), "spearman_exit_vs_truth": truth.get("spearman_exit")}  # fmt: skip
    return {k: v for k, v in picks.items() if isinstance(v, (int, float))}


def default_bundle(progress: bool = True) -> Path:
    """The synthetic default bundle in the user cache, built on first use (about two minutes)."""
    from seqrec.data.synth_config import SynthConfig
    from seqrec.data.synthetic import write_synthetic

    root = cache_root() / "bundles"
    # the name carries a hash of the default data and build settings, so changed defaults build a new bundle
    settings = {"build": asdict(default_build_config()), "data": SynthConfig().to_dict()}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:10]
    folder = root / f"{DEFAULT_BUNDLE_NAME}-{digest}"
    if (folder / "bundle.json").exists():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if (folder / "bundle.json").exists():  # another process built it while we waited
            return folder
        data = write_synthetic(root / f"{folder.name}.data", SynthConfig())
        build_bundle(data, folder, default_build_config(), progress=progress)
    return folder


def default_build_config() -> BuildConfig:
    """Settings of the default bundle: small enough to build in about two minutes on 2 cores.

    The encoder architecture and pretraining settings are pinned here rather than taken
    from :class:`EncoderConfig` / :class:`PretrainConfig`'s defaults (tuned for full runs on ML-100K): the default env
    and the benchmarks recorded on it must not change when those are retuned. Four epochs
    at a constant rate with weight averaging (EMA) give the best short-budget encoder.
    """
    encoder = {"dim": 64, "max_len": 20, "encoder": "cnn+gnn", "fusion": "parallel", "parallel_mix": "gate", "cnn_window": 5,
               "n_horizontal": 16, "n_vertical": 4, "gnn_steps": 1, "gnn_len": 20, "dropout": 0.3, "positional": True}  # fmt: skip
    pretrain = PretrainConfig(epochs=4, lr=2e-3, lr_decay=False, ema_decay=0.995, branch_loss=0.0, threads=1, precision="fp32")
    return BuildConfig(encoder=encoder, pretrain=pretrain, simulator=SimulatorConfig())
