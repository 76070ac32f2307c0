"""Agents on raw-id observations: the CNN + GNN encoder as SB3 features extractor, trained end to end."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from seqrec.agents.evaluation import EvalConfig, evaluate_policy
from seqrec.agents.policies import SB3Policy
from seqrec.agents.train import TrainConfig, build_model, latest_checkpoint, load_agent, make_vec_env, train
from seqrec.encoders.extractor import SequenceFeaturesExtractor
from seqrec.encoders.model import SequenceEncoder
from seqrec.envs.bundle import load_bundle
from seqrec.envs.session import N_SESSION_FEATURES


def ids_config(bundle: Path, out: Path, **overrides) -> TrainConfig:
    values = dict(algo="ppo", obs_mode="ids", bundle=str(bundle), timesteps=256, n_envs=4, out=str(out), n_steps=16,
                  eval_freq=128, eval_episodes=4, checkpoint_freq=128, net_arch=[32])  # fmt: skip
    return TrainConfig(**{**values, **overrides})


def extractors(model) -> list[SequenceFeaturesExtractor]:
    """Every features extractor of the model's policy (actor, critic, target networks)."""
    return [m for m in model.policy.modules() if isinstance(m, SequenceFeaturesExtractor)]


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_ids_mode_trains_saves_loads_evaluates_and_resumes(tiny_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    bundle = load_bundle(tiny_bundle)
    cfg = ids_config(tiny_bundle, tmp_path / "run")
    run = train(cfg, progress=False)
    for name in ("config.json", "final_model.zip", "best_model.zip", "evaluations.npz", "checkpoints/model_256_steps.zip"):
        assert (run / name).exists(), name

    # the zip is self-contained: loading it rebuilds the extractor from its config, never reads encoder.pt
    def no_checkpoint_reads(*args, **kwargs):
        raise AssertionError("loading a trained agent read an encoder checkpoint")

    with monkeypatch.context() as mp:
        mp.setattr(SequenceEncoder, "load", no_checkpoint_reads)
        model, saved = load_agent(run, which="final")
    assert saved.obs_mode == "ids" and model.num_timesteps == 256
    (extractor,) = set(extractors(model))  # one extractor, shared by the policy and value networks
    assert not same_weights(extractor.encoder, bundle.encoder)  # trained end to end (the default) ...
    assert same_weights(bundle.encoder, SequenceEncoder.load(tiny_bundle / "encoder.pt"))  # ... on a copy: the env's is untouched

    result = evaluate_policy(SB3Policy(model), bundle, saved.env_options(), EvalConfig(episodes=8))
    assert result["episodes"] == 8 and np.isfinite(result["mean_return"])

    resumed = train(replace(cfg, timesteps=384), resume=True, progress=False)
    more, _ = load_agent(resumed, which="final")
    assert more.num_timesteps == 384 > model.num_timesteps
    assert latest_checkpoint(run).name == "model_384_steps.zip"


@pytest.mark.parametrize("freeze", [False, True])
def test_ids_extractor_starts_from_the_bundle_encoder(tiny_bundle: Path, tmp_path: Path, freeze: bool) -> None:
    bundle = load_bundle(tiny_bundle)
    cfg = ids_config(tiny_bundle, tmp_path / "run", freeze_encoder=freeze)
    model = build_model(cfg, make_vec_env(cfg, 4, 0), tmp_path / "tb")
    (extractor,) = set(extractors(model))
    assert same_weights(extractor.encoder, bundle.encoder)  # the pretrained weights, not a fresh encoder
    assert all(p.requires_grad != freeze for p in extractor.encoder.parameters())
    # the encoder state plus every other observation key (session features, candidate embeddings)
    space = model.observation_space
    extra = sum(int(np.prod(space[k].shape)) for k in space.spaces if k not in ("items", "behaviours", "mask"))
    assert extractor.features_dim == bundle.encoder.config.dim + extra and extra > N_SESSION_FEATURES
    obs = make_vec_env(cfg, 4, 0).reset()
    with torch.no_grad():
        features = extractor(model.policy.obs_to_tensor(obs)[0])
    assert features.shape == (4, extractor.features_dim) and torch.isfinite(features).all()


def test_frozen_encoder_keeps_its_pretrained_weights(tiny_bundle: Path, tmp_path: Path) -> None:
    cfg = ids_config(tiny_bundle, tmp_path / "run", timesteps=128, freeze_encoder=True)
    model, _ = load_agent(train(cfg, progress=False), which="final")
    (extractor,) = set(extractors(model))
    assert same_weights(extractor.encoder, load_bundle(tiny_bundle).encoder)
    assert not any(p.requires_grad for p in extractor.encoder.parameters())


@pytest.mark.parametrize("algo", ["maskable-ppo", "dqn", "sac"])
def test_other_algorithms_train_on_ids(tiny_bundle: Path, tmp_path: Path, algo: str) -> None:
    cfg = ids_config(tiny_bundle, tmp_path / algo, algo=algo, timesteps=128)
    model, saved = load_agent(train(cfg, progress=False), which="final")
    assert model.num_timesteps >= 128
    nets = extractors(model)  # DQN's target network and SAC's critic have extractors of their own
    assert nets and all(e.encoder.config == load_bundle(tiny_bundle).encoder.config for e in nets)
    result = evaluate_policy(SB3Policy(model, name=algo), load_bundle(tiny_bundle), saved.env_options(), EvalConfig(episodes=4))
    assert np.isfinite(result["mean_return"])


def test_extractor_refuses_keys_it_cannot_pass_through(tiny_bundle: Path) -> None:
    from gymnasium import spaces

    space = spaces.Dict({"items": spaces.Box(-1, 59, (20,), np.int64), "slot": spaces.Discrete(3)})
    with pytest.raises(ValueError, match=r"\['slot'\] must be Box"):
        SequenceFeaturesExtractor(space, config=load_bundle(tiny_bundle).encoder.config.to_dict())
