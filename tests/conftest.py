"""Shared fixtures: an isolated cache per test session and the real ML-100K when present."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep prepared datasets and default bundles out of the user's real cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SEQREC_CACHE", str(tmp_path_factory.mktemp("seqrec-cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def ml100k_path() -> Path:
    """The real MovieLens 100K folder (licence forbids committing it); skip when absent."""
    path = SHARED_DATA / "ml-100k"
    if not (path / "u.data").exists():
        pytest.skip(f"MovieLens 100K not found at {path} (tests read it from ../shared/data; it is never committed)")
    return path


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small bundle built end to end from a synthetic log (a few seconds)."""
    from seqrec.data.synth_config import SynthConfig
    from seqrec.data.synthetic import write_synthetic
    from seqrec.encoders.config import PretrainConfig
    from seqrec.envs.bundle import BuildConfig, build_bundle
    from seqrec.simulators.config import SimulatorConfig

    root = tmp_path_factory.mktemp("tiny-bundle")
    data = write_synthetic(root / "data", SynthConfig(n_users=150, n_items=60, seed=3))
    cfg = BuildConfig(encoder={"dim": 16, "gnn_len": 20, "max_len": 20}, pretrain=PretrainConfig(epochs=2, tensorboard=False),
                      simulator=SimulatorConfig(epochs=2, dim=16, max_history=20))  # fmt: skip
    return build_bundle(data, root / "bundle", cfg, progress=False)


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray of 2 CPUs for one test module (the Ray tests skip when the extra is not installed)."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
