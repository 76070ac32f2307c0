"""`gymnasium.make("SeqRec-v0")` from nothing: the default bundle is built on an empty cache."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest


@pytest.mark.slow
def test_make_on_an_empty_cache_builds_the_default_bundle_and_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gymnasium as gym

    import seqrec  # noqa: F401  (registers SeqRec-v0)
    import seqrec.envs.bundle as bundle_mod
    import seqrec.envs.seqrec_env as env_mod

    monkeypatch.setenv("SEQREC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(bundle_mod, "_LOADED", {})  # nothing loaded earlier in this process either
    env = gym.make("SeqRec-v0")
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs) and 0 <= info["user"]
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs) and reward in (0.0, 1.0)
    built = list((tmp_path / "cache" / "bundles").glob("*/bundle.json"))
    assert len(built) == 1, "the default bundle was not built into the empty cache"
    # the docstring example of SeqRecEnv, with its outputs, on that same default bundle
    failures, tried = doctest.testmod(env_mod, optionflags=doctest.ELLIPSIS)[:2]
    assert tried >= 5 and failures == 0
