"""Train SB3 agents on the batched SeqRec env, with evaluation, checkpoints and resume.

A run folder holds ``config.json`` (every option), ``tb/`` (TensorBoard),
``checkpoints/`` (periodic model + replay buffer), ``best_model.zip`` (best periodic
evaluation), ``evaluations.npz`` (the learning curve) and ``final_model.zip``.
``resume=True`` continues from the newest checkpoint up to the same total step count.
"""

from __future__ import annotations

import json
import os
import re
import warnings
import zipfile
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback, CallbackList

from seqrec.infra.atomic import atomic_write, write_json_atomic
from seqrec.infra.errors import CheckpointError, SeqrecError
from seqrec.infra.devices import check_device_name, resolve_device
from seqrec.infra.threads import torch_threads
from seqrec.envs.bundle import load_bundle
from seqrec.envs.sb3_vec import SB3VecEnv
from seqrec.envs.session import N_SESSION_FEATURES
from seqrec.envs.vector_env import SeqRecVectorEnv

ALGOS = ("ppo", "a2c", "dqn", "qrdqn", "sac", "td3", "maskable-ppo")
DEFAULT_ACTION_MODE = {"ppo": "candidates", "a2c": "candidates", "dqn": "candidates", "qrdqn": "candidates",
                       "maskable-ppo": "item", "sac": "continuous", "td3": "continuous"}  # fmt: skip


@dataclass
class TrainConfig:
    """Every option of ``seqrec train`` (a TOML/YAML ``--config`` file may set any of them)."""

    algo: str = "ppo"
    """ppo | a2c | dqn | qrdqn | sac | td3 | maskable-ppo."""
    bundle: str | None = None
    """Bundle folder; None = the synthetic default bundle."""
    timesteps: int = 100_000
    """Total environment steps (over all envs)."""
    n_envs: int = 16
    """Parallel simulated users in the batched env."""
    seed: int = 0
    """Seeds the env, the agent and torch."""
    out: str = "runs/ppo"
    """Run folder."""
    action_mode: str | None = None
    """Env action mode; None picks the algorithm's (SAC/TD3 continuous, MaskablePPO item, others candidates)."""
    obs_mode: str = "embedding"
    """embedding (frozen encoder state) or ids (raw history; uses the encoder as features extractor)."""
    freeze_encoder: bool = False
    """``obs_mode="ids"`` only. The features extractor (the CNN + GNN encoder) always starts
    from the bundle's pretrained encoder (``encoder.pt``); False (default) trains it end to
    end with the policy, which is what ids mode is for; True keeps its weights fixed (then
    the agent sees what embedding mode gives it, at the cost of encoding every step). The
    env's own encoder (candidate retrieval) is a separate copy and never changes."""
    env: dict[str, Any] = field(default_factory=dict)
    """Other env options (n_candidates, reward_weights, max_episode_steps, …)."""
    learning_rate: float | None = None
    """None: 1e-3 for PPO and MaskablePPO (tuned on both benchmark bundles), SB3's default otherwise."""
    gamma: float = 0.5
    """Discount. The simulated users reward the near future (a click now, a user who stays);
    0.5 (a horizon of about two steps) learned fastest and scored best in the 15-minute
    budget on both benchmark bundles: with 0.95 the long, noisy returns slowed learning
    (benchmarks/README.md)."""
    n_steps: int = 128
    """PPO/A2C rollout length per env."""
    ent_coef: float = 0.001
    """PPO/A2C entropy bonus (large catalogues: keep it small, the max entropy is log n_items)."""
    eval_freq: int = 10_000
    """Evaluate every this many total steps (and keep the best model)."""
    eval_episodes: int = 100
    """Episodes per periodic evaluation."""
    checkpoint_freq: int = 10_000
    """Save a resumable checkpoint every this many total steps."""
    net_arch: list[int] = field(default_factory=lambda: [128, 128])
    """Hidden layers of the policy/value networks (the value network only, under ``policy_init="encoder"``)."""
    policy_init: str = "encoder"
    """``encoder``: PPO / A2C / MaskablePPO in item mode on embedding observations start
    from the encoder's next-item policy — a linear policy head whose logits are the
    encoder's catalogue scores divided by ``init_temperature`` — so the deterministic agent
    is the greedy baseline at step 0 and RL only has to improve on it. ``random``: SB3's
    default initialisation (an MLP head that starts uniform over the catalogue)."""
    init_temperature: float = 1.0
    """Softmax temperature of the encoder-initialised policy (exploration at the start)."""
    device: str = "cpu"
    """Torch device of the agent's networks: ``auto | cpu | cuda | cuda:N`` (:mod:`seqrec.infra.devices`)."""
    threads: int = 1
    """``torch.set_num_threads`` (small networks on CPU run fastest on one thread)."""

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise SeqrecError(f"unknown algo {self.algo!r}; expected one of {', '.join(ALGOS)}")
        if self.timesteps < 1 or self.n_envs < 1:
            raise SeqrecError("timesteps and n_envs must be >= 1")
        if self.action_mode is None:
            self.action_mode = DEFAULT_ACTION_MODE[self.algo]
        allowed = {"sac": ("continuous",), "td3": ("continuous",)}.get(self.algo, ("item", "candidates"))
        if self.action_mode not in allowed:
            raise SeqrecError(f"{self.algo} needs action_mode {' or '.join(allowed)}, not {self.action_mode!r}")
        if self.policy_init not in ("encoder", "random"):
            raise SeqrecError(f"policy_init must be 'encoder' or 'random', not {self.policy_init!r}")
        if not self.init_temperature > 0:
            raise SeqrecError(f"init_temperature must be > 0, not {self.init_temperature}")
        check_device_name(self.device)
        if self.freeze_encoder and self.obs_mode != "ids":
            raise SeqrecError(f"freeze_encoder applies to obs_mode 'ids' only; obs_mode {self.obs_mode!r} always uses the frozen encoder")

    @property
    def warm_start(self) -> bool:
        """Whether the policy head starts from the encoder's scores (see ``policy_init``)."""
        return (self.policy_init == "encoder" and self.algo in ("ppo", "a2c", "maskable-ppo")
                and self.action_mode == "item" and self.obs_mode == "embedding")

    @classmethod
    def from_sources(cls, file: str | Path | None, overrides: dict[str, Any]) -> "TrainConfig":
        """Merge a TOML/YAML file and explicit overrides (``None`` values are ignored)."""
        values: dict[str, Any] = {}
        if file is not None:
            values.update(load_config_file(Path(file)))
        values.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SeqrecError(f"unknown training option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**values)

    def env_options(self) -> dict[str, Any]:
        return {"obs_mode": self.obs_mode, "action_mode": self.action_mode, **self.env}


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) file of options."""
    try:
        text = path.read_text()
        if path.suffix == ".toml":
            import tomllib

            return tomllib.loads(text)
        if path.suffix in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(text) or {}
    except (OSError, ValueError) as err:
        raise SeqrecError(f"{path}: cannot read config ({type(err).__name__}: {str(err).splitlines()[0]})") from None
    raise SeqrecError(f"{path}: config files must be .toml, .yaml or .yml")


def algorithm_class(algo: str):
    """The SB3 / sb3-contrib class of ``algo``."""
    import sb3_contrib
    import stable_baselines3 as sb3

    return {"ppo": sb3.PPO, "a2c": sb3.A2C, "dqn": sb3.DQN, "sac": sb3.SAC, "td3": sb3.TD3,
            "qrdqn": sb3_contrib.QRDQN, "maskable-ppo": sb3_contrib.MaskablePPO}[algo]  # fmt: skip


def make_vec_env(cfg: TrainConfig, n_envs: int, seed: int) -> SB3VecEnv:
    """The batched env as an SB3 VecEnv, seeded."""
    venv = SB3VecEnv(SeqRecVectorEnv(num_envs=n_envs, bundle=load_bundle(cfg.bundle), **cfg.env_options()))
    venv.seed(seed)
    return venv


def _policy_name(venv: SB3VecEnv) -> str:
    from gymnasium import spaces

    return "MultiInputPolicy" if isinstance(venv.observation_space, spaces.Dict) else "MlpPolicy"


def build_model(cfg: TrainConfig, venv: SB3VecEnv, tb_dir: Path):
    """A fresh SB3 model for ``cfg`` on ``venv``."""
    cls = algorithm_class(cfg.algo)
    kwargs: dict[str, Any] = {"seed": cfg.seed, "verbose": 0, "tensorboard_log": str(tb_dir), "device": resolve_device(cfg.device),
                              "gamma": cfg.gamma, "policy_kwargs": {"net_arch": list(cfg.net_arch)}}  # fmt: skip
    if cfg.learning_rate is not None:
        kwargs["learning_rate"] = cfg.learning_rate
    if cfg.algo in ("ppo", "maskable-ppo"):
        kwargs.setdefault("learning_rate", 1e-3)
        kwargs.update(n_steps=cfg.n_steps, batch_size=min(256, cfg.n_steps * cfg.n_envs), ent_coef=cfg.ent_coef)
    elif cfg.algo == "a2c":
        kwargs.update(n_steps=min(cfg.n_steps, 16), ent_coef=cfg.ent_coef)
    elif cfg.algo in ("dqn", "qrdqn"):
        kwargs.update(buffer_size=100_000, learning_starts=min(1000, cfg.timesteps // 4), train_freq=1,
                      gradient_steps=max(1, cfg.n_envs // 8), target_update_interval=1000, exploration_fraction=0.3)  # fmt: skip
    elif cfg.algo in ("sac", "td3"):
        kwargs.update(buffer_size=100_000, learning_starts=min(1000, cfg.timesteps // 4), train_freq=1,
                      gradient_steps=max(1, cfg.n_envs // 8))  # fmt: skip
    encoder = load_bundle(cfg.bundle).encoder
    if cfg.obs_mode == "ids":
        from seqrec.encoders.extractor import SequenceFeaturesExtractor

        # a plain config, not the live module: SB3 pickles policy_kwargs into every zip, which holds the weights anyway
        extractor_kwargs = {"config": encoder.config.to_dict(), "freeze": cfg.freeze_encoder}
        kwargs["policy_kwargs"].update(features_extractor_class=SequenceFeaturesExtractor, features_extractor_kwargs=extractor_kwargs)
    if cfg.warm_start:
        kwargs["policy_kwargs"]["net_arch"] = {"pi": [], "vf": list(cfg.net_arch)}
    model = cls(_policy_name(venv), venv, **kwargs)
    if cfg.obs_mode == "ids":
        from seqrec.encoders.extractor import load_encoder_weights

        load_encoder_weights(model.policy, encoder)  # every extractor (critics, target networks) starts pretrained
    if cfg.warm_start:
        init_policy_from_encoder(model.policy, encoder, cfg.init_temperature)
    return model


def init_policy_from_encoder(policy, encoder, temperature: float = 1.0) -> None:
    """Set a linear policy head to the encoder's next-item scores.

    The embedding observation is ``[state (d) | session features (N_SESSION_FEATURES)]`` and
    the head maps it to ``n_items`` logits, so weights ``[E | 0] / T`` and bias ``b / T`` (``E`` the encoder's
    item embeddings ``(n_items, d)``, ``b`` its item bias) give exactly ``encoder.scores(state) / T``.
    """
    head = policy.action_net
    with torch.no_grad():
        emb, bias = encoder.item_embeddings().float(), encoder.item_bias.float()
        n, d = emb.shape
        if head.weight.shape != (n, d + N_SESSION_FEATURES):
            raise SeqrecError(f"policy head {tuple(head.weight.shape)} does not match the encoder "
                              f"({n} items, dim {d} + {N_SESSION_FEATURES} session features)")
        head.weight.zero_()
        head.weight[:, :d] = emb / temperature
        head.bias.copy_(bias / temperature)


def latest_checkpoint(run: Path) -> Path | None:
    """The checkpoint with the most steps in ``run/checkpoints``, or None."""
    ckpts = [(int(m.group(1)), p) for p in (run / "checkpoints").glob("model_*_steps.zip") if (m := re.search(r"_(\d+)_steps", p.name))]
    return max(ckpts)[1] if ckpts else None


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Train ``cfg.algo`` for ``cfg.timesteps`` steps on ``cfg.threads`` torch threads; returns the run folder."""
    run = Path(cfg.out)
    run.mkdir(parents=True, exist_ok=True)
    if resume:
        saved = json.loads((run / "config.json").read_text()) if (run / "config.json").exists() else None
        if saved is None:
            raise SeqrecError(f"{run}: nothing to resume (no config.json)")
        cfg = TrainConfig(**{**saved, "timesteps": cfg.timesteps})
    if cfg.bundle is None:  # record which bundle: the default one's name changes with its settings
        from seqrec.envs.bundle import default_bundle

        cfg = replace(cfg, bundle=str(default_bundle(progress=progress)))
    write_json_atomic(run / "config.json", asdict(cfg))
    with torch_threads(cfg.threads):
        return _train(cfg, run, resume, progress)


def _train(cfg: TrainConfig, run: Path, resume: bool, progress: bool) -> Path:
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    cls = algorithm_class(cfg.algo)
    ckpt = latest_checkpoint(run) if resume else None
    done = 0
    if ckpt is not None:
        done = int(re.search(r"_(\d+)_steps", ckpt.name).group(1))
    venv = make_vec_env(cfg, cfg.n_envs, cfg.seed + done)  # fresh users after a resume, none repeated
    if ckpt is not None:
        try:
            model = cls.load(ckpt, env=venv, device=resolve_device(cfg.device))
        except Exception as err:  # SB3 raises several types for damaged zips
            raise CheckpointError(f"{ckpt}: cannot load checkpoint ({type(err).__name__})") from None
        buffer = ckpt.with_name(ckpt.name.replace("model_", "replay_buffer_").replace(".zip", ".pkl"))
        if hasattr(model, "load_replay_buffer") and buffer.exists():
            model.load_replay_buffer(buffer)
    else:
        model = build_model(cfg, venv, run / "tb")
    remaining = cfg.timesteps - model.num_timesteps
    if remaining <= 0:
        return run
    every = max(1, cfg.checkpoint_freq // cfg.n_envs)
    evaluation = _eval_callback(cfg, run, resumed_from=done)
    callbacks = [_AtomicCheckpoint(every, run / "checkpoints"), evaluation]
    if progress:
        callbacks.append(_Progress(cfg.timesteps, evaluation))
    model.learn(remaining, callback=CallbackList(callbacks), reset_num_timesteps=ckpt is None, tb_log_name="run")
    save_model_atomic(model, run / "final_model.zip")
    return run


def save_model_atomic(model, path: Path) -> None:
    """``model.save`` through :func:`atomic_write`: a kill mid-save leaves the old file or none, never half a zip."""
    with atomic_write(path, "wb") as fh:
        model.save(fh)


class _AtomicCheckpoint(BaseCallback):
    """Every ``every`` calls, ``model_<steps>_steps.zip`` (and the replay buffer, if any), each written atomically.

    The buffer goes first, so a model checkpoint that exists always has its buffer beside it;
    SB3's ``CheckpointCallback`` writes in place, and a kill mid-write left a truncated zip
    that ``--resume`` then could not load.
    """

    def __init__(self, every: int, folder: Path) -> None:
        super().__init__()
        self.every, self.folder = every, folder

    def _on_step(self) -> bool:
        if self.n_calls % self.every == 0:
            steps = self.num_timesteps
            if getattr(self.model, "replay_buffer", None) is not None:
                with atomic_write(self.folder / f"replay_buffer_{steps}_steps.pkl", "wb") as fh:
                    self.model.save_replay_buffer(fh)
            save_model_atomic(self.model, self.folder / f"model_{steps}_steps.zip")
        return True


class _Progress(BaseCallback):
    """Steps done of the run's total with the latest evaluation return, through
    :func:`seqrec.infra.progress.progress` (redrawn on a terminal, a line every few seconds in a log)."""

    def __init__(self, total: int, evaluation: BaseCallback) -> None:
        super().__init__()
        self.total, self.evaluation, self.bar = total, evaluation, None

    def _on_training_start(self) -> None:
        from seqrec.infra.progress import progress

        self.bar = progress(total=self.total, initial=self.model.num_timesteps, desc="train", unit="step")

    def _on_step(self) -> bool:
        self.bar.update(self.model.num_timesteps - self.bar.n)
        if np.isfinite(getattr(self.evaluation, "last_mean_reward", np.nan)):
            self.bar.set_postfix(eval_return=f"{self.evaluation.last_mean_reward:.3f}", refresh=False)
        return True

    def _on_training_end(self) -> None:
        self.bar.close()


class _SaveBest(BaseCallback):
    """``callback_on_new_best`` of the evaluation callback: ``best_model.zip``, written atomically."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def _on_step(self) -> bool:
        save_model_atomic(self.model, self.path)
        return True


def _eval_callback(cfg: TrainConfig, run: Path, resumed_from: int = 0):
    """Periodic evaluation on held-out seeds that keeps the best model (and, after a resume,
    the learning curve up to the checkpoint and the best return so far)."""
    eval_env = make_vec_env(cfg, min(cfg.eval_episodes, 64), 10_000_019)
    every = max(1, cfg.eval_freq // cfg.n_envs)
    if cfg.algo == "maskable-ppo":
        from sb3_contrib.common.maskable.callbacks import MaskableEvalCallback as EvalCallback
    else:
        from stable_baselines3.common.callbacks import EvalCallback
    callback = _atomic_curve(EvalCallback)(eval_env, n_eval_episodes=cfg.eval_episodes, eval_freq=every,
                                           callback_on_new_best=_SaveBest(run / "best_model.zip"), log_path=str(run),
                                           deterministic=True, verbose=0)  # fmt: skip
    if resumed_from and (run / CURVE_NAME).exists():
        _restore_evaluations(callback, run / CURVE_NAME, resumed_from)
    return callback


CURVE_NAME = "evaluations.npz"


def _atomic_curve(cls: type) -> type:
    """``cls`` (an SB3 evaluation callback) writing its ``evaluations.npz`` to a temporary file
    renamed into place, so a run killed mid-write keeps its last whole learning curve."""

    class AtomicCurve(cls):  # type: ignore[misc, valid-type]
        def _init_callback(self) -> None:
            super()._init_callback()
            if self.log_path is not None:
                self.curve = Path(self.log_path).with_name(CURVE_NAME)
                self.log_path = str(self.curve.with_name(".evaluations.partial"))  # np.savez adds .npz

        def _on_step(self) -> bool:
            go_on = super()._on_step()
            partial = Path(str(self.log_path) + ".npz") if self.log_path is not None else None
            if partial is not None and partial.exists():
                os.replace(partial, self.curve)
            return go_on

    return AtomicCurve


def _restore_evaluations(callback, path: Path, upto: int) -> None:
    """Keep the curve's evaluations up to step ``upto`` (the resumed checkpoint) and the best
    return of any evaluation so far, which ``best_model.zip`` holds: a worse model after the
    resume does not replace it. A damaged curve (a kill mid-write, before writes were atomic)
    is dropped with a one-line warning; training goes on with a fresh one."""
    try:
        past = np.load(path)
        past.files  # noqa: B018 -- reads the zip directory: a truncated file fails here
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        warnings.warn(f"{path}: damaged learning curve ({err}); starting a fresh one", stacklevel=2)
        return
    with past:
        keep = past["timesteps"] <= upto
        callback.evaluations_timesteps = past["timesteps"][keep].tolist()
        callback.evaluations_results = past["results"][keep].tolist()
        callback.evaluations_length = past["ep_lengths"][keep].tolist()
        if len(past["results"]):
            callback.best_mean_reward = float(past["results"].mean(axis=1).max())


def run_label(run: Path, cfg: TrainConfig) -> str:
    """A trained run's name in result tables: its folder name, with the algorithm in front unless the name says it."""
    return run.name if cfg.algo in run.name else f"{cfg.algo}:{run.name}"


def load_agent(run: str | Path, which: str = "best"):
    """The trained model of a run folder (``best`` evaluation model, else the final one) and its config."""
    run = Path(run)
    try:
        cfg = TrainConfig(**json.loads((run / "config.json").read_text()))
    except (OSError, ValueError, TypeError) as err:
        raise SeqrecError(f"{run}: not a seqrec run folder (config.json: {err})") from None
    if (run / "engine.json").exists():  # trained by `seqrec train --engine rllib`: its policy behind SB3's predict
        from seqrec.agents.rllib_engine import load_rllib_model

        return load_rllib_model(run, which), cfg
    path = run / "best_model.zip" if which == "best" and (run / "best_model.zip").exists() else run / "final_model.zip"
    if not path.exists():
        path = latest_checkpoint(run) or path
    try:
        # a run trained on a GPU still loads on a machine without one
        model = algorithm_class(cfg.algo).load(path, device=resolve_device("cpu" if cfg.device == "cpu" else "auto"))
    except Exception as err:
        raise CheckpointError(f"{path}: cannot load the trained model ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
    return model, cfg
