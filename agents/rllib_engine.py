"""``seqrec train --engine rllib``: RLlib PPO (new API stack) on the batched env, on Ray.

The same :class:`~seqrec.agents.train.TrainConfig` as the SB3 trainer (``algo`` must be
``ppo``, ``obs_mode`` ``embedding``; ``n_envs`` sub-envs per env runner, ``n_steps`` steps per
sub-env per rollout), plus :class:`RLlibConfig` (env runners, cluster address). Each env
runner steps one :class:`~seqrec.envs.rllib_vec.NextStepVectorEnv` through Gymnasium's
``vector_entry_point`` (one encoder and one simulator call per step for all its sub-envs).

The run folder is one that ``seqrec evaluate`` and ``seqrec ope run`` read like an SB3 run's:
``config.json`` (the TrainConfig), ``engine.json`` (``{"engine": "rllib", ...}`` and the measured
sampling throughput), ``evaluations.npz`` (the same learning curve, from seqrec's own online
evaluation), ``rllib/best`` and ``rllib/final`` (the policy module), ``rllib/checkpoints/steps_N``
(whole-algorithm checkpoints for ``--resume``) and ``tb/``. :func:`load_rllib_model` returns the
policy behind SB3's ``predict`` so :class:`~seqrec.agents.policies.SB3Policy` drives it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from seqrec.agents.ray_cluster import connect_ray, require_ray
from seqrec.agents.train import CURVE_NAME, TrainConfig
from seqrec.envs.rllib_vec import flat_observation
from seqrec.infra.atomic import write_json_atomic
from seqrec.infra.errors import CheckpointError, SeqrecError
from seqrec.infra.threads import torch_threads

ENGINES = ("sb3", "rllib")
DEFAULT_ENGINE = "sb3"
"""``seqrec train --engine``: Stable-Baselines3 in this process unless asked for RLlib."""
ENGINE_FILE = "engine.json"
ENV_NAME = "seqrec-rllib"


@dataclass
class RLlibConfig:
    """Options of the RLlib engine beyond :class:`TrainConfig`."""

    num_env_runners: int = 1
    """Env runner actors sampling in parallel (each its own process and CPU); 0 samples in the driver."""
    address: str | None = None
    """Ray cluster to run on: ``auto`` or ``HOST:PORT``; None starts a local Ray on this machine."""
    num_epochs: int = 10
    """PPO epochs over each train batch (SB3's ``n_epochs`` default)."""
    minibatch_size: int = 256
    """PPO minibatch (SB3's ``batch_size``: ``min(256, rollout size)``)."""

    def __post_init__(self) -> None:
        if self.num_env_runners < 0 or self.num_epochs < 1 or self.minibatch_size < 1:
            raise SeqrecError("num_env_runners must be >= 0, num_epochs and minibatch_size >= 1")


def check_rllib_config(cfg: TrainConfig) -> None:
    """One-line errors for what the RLlib engine does not train."""
    if cfg.algo != "ppo":
        raise SeqrecError(f"--engine rllib trains ppo (RLlib PPO), not {cfg.algo!r}; use --engine sb3 for {cfg.algo}")
    if cfg.obs_mode != "embedding":
        raise SeqrecError(f"--engine rllib takes obs_mode 'embedding', not {cfg.obs_mode!r}")
    if cfg.device != "cpu":
        raise SeqrecError(f"--engine rllib trains on the CPU (device 'cpu'), not {cfg.device!r}")


def rollout_size(cfg: TrainConfig, engine: RLlibConfig) -> int:
    """Env steps per training iteration: ``n_steps`` per sub-env, ``n_envs`` sub-envs per runner."""
    return cfg.n_steps * cfg.n_envs * max(1, engine.num_env_runners)


def algorithm_config(cfg: TrainConfig, engine: RLlibConfig):
    """The ``PPOConfig``: SB3 PPO's settings where RLlib's differ (no KL penalty, no value clipping)."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec
    from ray.tune import register_env

    from seqrec.agents.rllib_module import MaskedPPOModule
    from seqrec.envs.rllib_vec import make_rllib_env

    register_env(ENV_NAME, make_rllib_env)
    batch = rollout_size(cfg, engine)
    model = {"pi_hidden": [] if _warm(cfg) else list(cfg.net_arch), "vf_hidden": list(cfg.net_arch)}
    return (
        PPOConfig()
        .environment(env=ENV_NAME, env_config={"bundle": cfg.bundle, **cfg.env_options()})
        .env_runners(num_env_runners=engine.num_env_runners, num_envs_per_env_runner=cfg.n_envs, rollout_fragment_length=cfg.n_steps,
                     gym_env_vectorize_mode="vector_entry_point", num_cpus_per_env_runner=1)  # fmt: skip
        .training(lr=cfg.learning_rate if cfg.learning_rate is not None else 1e-3, gamma=cfg.gamma, entropy_coeff=cfg.ent_coef,
                  train_batch_size_per_learner=batch, minibatch_size=min(engine.minibatch_size, batch), num_epochs=engine.num_epochs,
                  lambda_=0.95, clip_param=0.2, vf_loss_coeff=0.5, grad_clip=0.5, use_kl_loss=False, kl_coeff=0.0, vf_clip_param=float("inf"))  # fmt: skip
        .rl_module(rl_module_spec=RLModuleSpec(module_class=MaskedPPOModule, model_config=model))
        .learners(num_learners=0)
        .debugging(seed=cfg.seed, log_level="ERROR")
    )


def _warm(cfg: TrainConfig) -> bool:
    """The encoder-initialised linear policy head (as SB3's ``policy_init="encoder"``, item mode)."""
    return cfg.policy_init == "encoder" and cfg.action_mode == "item"


def train_rllib(cfg: TrainConfig, engine: RLlibConfig = RLlibConfig(), resume: bool = False, progress: bool = True) -> Path:
    """Train RLlib PPO for ``cfg.timesteps`` env steps (whole iterations); returns the run folder."""
    check_rllib_config(cfg)
    require_ray()
    run = Path(cfg.out)
    if resume:
        if not (run / "config.json").exists():
            raise SeqrecError(f"{run}: nothing to resume (no config.json)")
        cfg = TrainConfig(**{**json.loads((run / "config.json").read_text()), "timesteps": cfg.timesteps})
    if cfg.bundle is None:
        from seqrec.envs.bundle import default_bundle

        cfg = replace(cfg, bundle=str(default_bundle(progress=progress)))
    cfg = replace(cfg, bundle=str(Path(cfg.bundle).resolve()))  # env runners may start in another folder
    run.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run / "config.json", asdict(cfg))
    write_json_atomic(run / ENGINE_FILE, {"engine": "rllib", **asdict(engine), "ray": require_ray().__version__})
    with torch_threads(cfg.threads):
        connect_ray(engine.address)
        return _Trainer(cfg, engine, run, resume, progress).run()


class _Trainer:
    """The training loop: ``algo.train()`` iterations, seqrec's evaluation, checkpoints, throughput."""

    def __init__(self, cfg: TrainConfig, engine: RLlibConfig, run: Path, resume: bool, progress: bool):
        from seqrec.envs.bundle import load_bundle

        self.cfg, self.engine, self.run_dir, self.progress = cfg, engine, run, progress
        self.bundle = load_bundle(cfg.bundle)
        self.algo = algorithm_config(cfg, engine).build_algo()
        self.steps = 0
        ckpt = latest_rllib_checkpoint(run) if resume else None
        if ckpt is not None:
            self.algo.restore_from_path(str(ckpt.resolve()))
            self.steps = int(re.search(r"steps_(\d+)", ckpt.name).group(1))
        elif _warm(cfg):
            self._warm_start()
        self.curve = _load_curve(run / CURVE_NAME, self.steps) if ckpt is not None else {"timesteps": [], "results": [], "ep_lengths": []}
        self.best = max((float(np.mean(r)) for r in self.curve["results"]), default=-np.inf)
        self.sampling: list[tuple[float, int]] = []  # (sampling seconds, env steps) of each iteration

    def _warm_start(self) -> None:
        from seqrec.agents.rllib_module import init_from_encoder

        enc = self.bundle.encoder
        emb, bias = enc.item_embeddings().detach().float(), enc.item_bias.detach().float()
        self._learner_module(lambda m: init_from_encoder(m, emb, bias, self.cfg.init_temperature))
        self.algo.env_runner_group.sync_weights(from_worker_or_learner_group=self.algo.learner_group, inference_only=True)

    def _learner_module(self, fn: Callable[[Any], Any]) -> Any:
        """``fn`` applied to the (local) learner's policy module."""
        from ray.rllib.core import DEFAULT_MODULE_ID

        results = self.algo.learner_group.foreach_learner(lambda learner: fn(learner.module[DEFAULT_MODULE_ID]))
        return [r.get() for r in results][0]

    def run(self) -> Path:
        from seqrec.infra.progress import progress

        cfg, run = self.cfg, self.run_dir
        next_eval, next_ckpt = _next(self.steps, cfg.eval_freq), _next(self.steps, cfg.checkpoint_freq)
        bar = progress(total=cfg.timesteps, initial=self.steps, desc="train (rllib)", unit="step", disable=not self.progress)
        writer = _tb_writer(run / "tb")
        try:
            while self.steps < cfg.timesteps:
                result = self.algo.train()
                self._account(result)
                bar.update(self.steps - bar.n)
                writer.add_scalar("rollout/ep_rew_mean", float(result["env_runners"].get("episode_return_mean", np.nan)), self.steps)
                if self.steps >= next_eval or self.steps >= cfg.timesteps:
                    ret = self._evaluate()
                    writer.add_scalar("eval/mean_reward", ret, self.steps)
                    bar.set_postfix(eval_return=f"{ret:.3f}", refresh=False)
                    next_eval = _next(self.steps, cfg.eval_freq)
                if self.steps >= next_ckpt:
                    _atomic_dir(run / "rllib" / "checkpoints" / f"steps_{self.steps}", lambda p: self.algo.save_to_path(str(p.resolve())))
                    next_ckpt = _next(self.steps, cfg.checkpoint_freq)
            _atomic_dir(run / "rllib" / "final", self._save_module)
            self._record_throughput()
        finally:
            bar.close()
            writer.close()
            logdir = getattr(self.algo, "logdir", None)
            self.algo.stop()
            if logdir and os.path.isdir(logdir) and not os.listdir(logdir):
                os.rmdir(logdir)  # the empty ~/ray_results folder every Algorithm makes
        return run

    def _account(self, result: dict) -> None:
        """Env steps done so far, and the sampling time of this iteration (for env steps/s per runner)."""
        from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME

        done = int(result[ENV_RUNNER_RESULTS][NUM_ENV_STEPS_SAMPLED_LIFETIME])
        lifetime_before = self.steps
        self.steps = max(self.steps, done) if done > 0 else self.steps
        timer = result.get("timers", {}).get("env_runner_sampling_timer")
        if timer is not None:
            self.sampling.append((float(timer), self.steps - lifetime_before))

    def _record_throughput(self) -> None:
        runners = max(1, self.engine.num_env_runners)
        timed = self.sampling[1:] or self.sampling  # the first iteration pays the env runners' warm-up
        seconds, steps = sum(t for t, _ in timed), sum(n for _, n in timed)
        per_runner = steps / runners / seconds if seconds > 0 else None
        info = json.loads((self.run_dir / ENGINE_FILE).read_text())
        info.update(env_steps=self.steps, env_steps_per_s_per_runner=per_runner)
        write_json_atomic(self.run_dir / ENGINE_FILE, info)

    def _save_module(self, path: Path) -> None:
        self._learner_module(lambda m: m.save_to_path(str(path.resolve())))

    def _evaluate(self) -> float:
        """seqrec's online evaluation of the current policy on held-out seeds (the SB3 trainer's seed)."""
        from seqrec.agents.evaluation import EvalConfig, evaluate_policy
        from seqrec.agents.policies import SB3Policy

        model = RLlibModel(self._learner_module(lambda m: m), self.cfg.env_options())
        res = evaluate_policy(SB3Policy(model), self.bundle, self.cfg.env_options(), EvalConfig(episodes=self.cfg.eval_episodes, seed=10_000_019))
        self.curve["timesteps"].append(self.steps)
        self.curve["results"].append(res["returns"])
        self.curve["ep_lengths"].append([res["mean_length"]] * len(res["returns"]))
        _save_curve(self.run_dir / CURVE_NAME, self.curve)
        if res["mean_return"] > self.best:
            self.best = res["mean_return"]
            _atomic_dir(self.run_dir / "rllib" / "best", self._save_module)
        return res["mean_return"]


def _next(steps: int, every: int) -> int:
    return (steps // max(every, 1) + 1) * max(every, 1)


def _tb_writer(folder: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(folder / "run_rllib"))


def _save_curve(path: Path, curve: dict) -> None:
    """``evaluations.npz`` in SB3's ``EvalCallback`` layout (``timesteps``, ``results``, ``ep_lengths``), written atomically."""
    from seqrec.infra.atomic import atomic_write

    with atomic_write(path, "wb") as fh:
        np.savez(fh, **{k: np.asarray(v) for k, v in curve.items()})


def _load_curve(path: Path, upto: int) -> dict:
    """The curve up to step ``upto`` (a resumed checkpoint); empty when there is none."""
    if not path.exists():
        return {"timesteps": [], "results": [], "ep_lengths": []}
    with np.load(path) as past:
        keep = past["timesteps"] <= upto
        return {k: past[k][keep].tolist() for k in ("timesteps", "results", "ep_lengths")}


def _atomic_dir(dest: Path, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` into a fresh folder beside ``dest``, then swap it in: a kill leaves the old folder or the new one."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        write(tmp)
        old = dest.with_name(f".{dest.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if dest.exists():
            os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def latest_rllib_checkpoint(run: Path) -> Path | None:
    """The algorithm checkpoint with the most steps in ``run/rllib/checkpoints``, or None."""
    ckpts = [(int(m.group(1)), p) for p in (run / "rllib" / "checkpoints").glob("steps_*") if (m := re.fullmatch(r"steps_(\d+)", p.name))]
    return max(ckpts)[1] if ckpts else None


def is_rllib_run(run: Path) -> bool:
    """Whether ``run`` was trained by this engine (its ``engine.json`` says rllib)."""
    try:
        return json.loads((Path(run) / ENGINE_FILE).read_text()).get("engine") == "rllib"
    except (OSError, ValueError):
        return False


class RLlibModel:
    """A trained RLlib policy module behind SB3's ``predict``, so every seqrec policy wrapper drives it.

    :param module: the :class:`~seqrec.agents.rllib_module.MaskedPPOModule`.
    :param env_options: the run's env options (the observation layout).
    """

    def __init__(self, module, env_options: dict) -> None:
        self.module, self.env_options = module, env_options

    def predict(self, obs, deterministic: bool = True, action_masks: np.ndarray | None = None):
        """``(actions (B,), None)``: the most likely allowed action (``deterministic``), else a sample.

        :param obs: the env's batched observation (a ``(B, d + 2)`` array, or a dict with ``candidates``).
        :param action_masks: ``(B, n_actions)`` bool; None allows every action.
        """
        flat = torch.as_tensor(flat_observation(obs), dtype=torch.float32)
        n = int(self.module.action_space.n)
        mask = torch.ones(flat.shape[0], n) if action_masks is None else torch.as_tensor(np.asarray(action_masks), dtype=torch.float32)
        with torch.no_grad():
            logits = self.module.forward_inference({"obs": {"action_mask": mask, "observations": flat}})["action_dist_inputs"]
        actions = logits.argmax(dim=1) if deterministic else torch.distributions.Categorical(logits=logits).sample()
        return actions.numpy(), None


def load_rllib_model(run: Path, which: str = "best") -> RLlibModel:
    """The policy of an RLlib run folder (``best`` evaluation, else ``final``), ready for :class:`SB3Policy`."""
    require_ray()
    from ray.rllib.core.rl_module.rl_module import RLModule

    cfg = TrainConfig(**json.loads((Path(run) / "config.json").read_text()))
    folders = [Path(run) / "rllib" / w for w in (("best", "final") if which == "best" else ("final", "best"))]
    path = next((p for p in folders if p.exists()), None)
    if path is None:
        raise CheckpointError(f"{run}: no trained RLlib policy (rllib/best or rllib/final)")
    try:
        module = RLModule.from_checkpoint(str(path.resolve()))  # pyarrow's file system takes absolute paths only
    except Exception as err:  # RLlib raises several types for damaged folders
        first = (str(err).strip().splitlines() or [""])[0]
        raise CheckpointError(f"{path}: cannot load the RLlib policy ({type(err).__name__}: {first})") from None
    module.eval()
    return RLlibModel(module, cfg.env_options())
