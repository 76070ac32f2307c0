"""Off-policy evaluation of seqrec policies on logged data, and its validation in the simulator.

* :func:`feedback_from_bundle` turns each test-split event of a bundle's log into one
  bandit round: context = the encoder state of the history before it, action = the logged
  item, reward = the logged response (a click or deeper behaviour; a rating >= 4 for rating
  logs). Propensities are the known logging policy's (``pscore`` column, logs generated in a
  simulator) or an estimated behaviour policy: the encoder's softmax over the catalogue with
  a temperature fitted by maximum likelihood on train-split events.
* :func:`reward_model` is the DM/DR regression: per-item reward rates on the train split,
  shrunk to the global rate.
* :func:`action_distributions` runs any :class:`~seqrec.agents.policies.Policy` on the
  rounds' logged states, exactly as in the env, and returns ``(n, n_items, 1)``.
* :func:`validate` logs rounds in the simulator with a known stochastic logging policy and
  compares every estimator with the target policy's true value (exact, from the simulator's
  click probabilities), for growing numbers of rounds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from seqrec.ope.logged_feedback import LoggedFeedback
from seqrec.ope.estimators import (
    DirectMethod,
    DoublyRobust,
    InverseProbabilityWeighting,
    Replay,
    SelfNormalizedIPS,
    SwitchDoublyRobust,
)
from seqrec.agents.policies import Policy, RandomPolicy
from seqrec.ope.diagnostics import estimate_flags, weight_diagnostics
from seqrec.ope.reward_models import ItemRateModel
from seqrec.envs.bundle import Bundle
from seqrec.envs.config import EnvConfig
from seqrec.envs.session import BatchedSessions

ESTIMATORS = (DirectMethod(), InverseProbabilityWeighting(), SelfNormalizedIPS(), DoublyRobust(), SwitchDoublyRobust(lambda_=100.0), Replay())


def logged_reward(bundle: Bundle, positions: np.ndarray) -> np.ndarray:
    """1.0 for a click or deeper behaviour (value >= 1) — or, for rating logs, a rating >= 4."""
    seq = bundle.seq
    threshold = 4.0 if seq.behaviour_names == ["rating"] else 1.0
    return (seq.values[positions] >= threshold).astype(np.float64)


def _states(bundle: Bundle, positions: np.ndarray, batch: int = 4096) -> torch.Tensor:
    """Encoder states of the histories before ``positions``, shape (n, d)."""
    L = bundle.encoder.config.max_len
    out = []
    for chunk in np.array_split(positions, max(1, int(np.ceil(len(positions) / batch)))):
        items, beh = bundle.seq.histories(chunk, L)
        with torch.inference_mode():
            out.append(bundle.encoder(torch.as_tensor(items), torch.as_tensor(beh.astype(np.int64))).float())
    return torch.cat(out)


def fit_behaviour_temperature(bundle: Bundle, n_fit: int = 20_000, seed: int = 0) -> float:
    """Temperature T of the estimated behaviour policy softmax(scores / T), by maximum likelihood
    on (a sample of) train-split events."""
    rng = np.random.default_rng(seed)
    pos = bundle.seq.positions("train")
    pos = rng.choice(pos, min(n_fit, len(pos)), replace=False)
    with torch.inference_mode():
        scores = bundle.encoder.scores(_states(bundle, pos)).float()
    target = torch.as_tensor(bundle.seq.items[pos])
    best = (np.inf, 1.0)
    for t in np.exp(np.linspace(np.log(0.1), np.log(20), 41)):
        nll = torch.nn.functional.cross_entropy(scores / float(t), target).item()
        best = min(best, (nll, float(t)))
    return best[1]


def feedback_from_bundle(bundle: Bundle, split: str = "test") -> LoggedFeedback:
    """Logged bandit feedback from ``split`` events of the bundle's log (see the module docstring)."""
    seq = bundle.seq
    pos = seq.positions(split)
    context = _states(bundle, pos)
    if seq.pscore is not None:
        pscore, source = seq.pscore[pos].astype(np.float64), "known"
    else:
        temp = fit_behaviour_temperature(bundle)
        with torch.inference_mode():
            probs = torch.softmax(bundle.encoder.scores(context) / temp, dim=1)
        pscore = probs[torch.arange(len(pos)), torch.as_tensor(seq.items[pos])].double().numpy().clip(1e-6, 1.0)
        source = "estimated"
    return LoggedFeedback(action=seq.items[pos], reward=logged_reward(bundle, pos), pscore=pscore, n_actions=seq.n_items,
                          context=context.numpy(), user=seq.users[pos], propensity_source=source)  # fmt: skip


def reward_model(bundle: Bundle, n_rounds: int, model: ItemRateModel = ItemRateModel()) -> np.ndarray:
    """q̂(x, a) fitted on the train split's events, shape (n_rounds, n_items, 1)."""
    seq = bundle.seq
    pos = np.flatnonzero(seq.split == 0)
    return model.predict(model.fit(seq.items[pos], logged_reward(bundle, pos), seq.n_items), n_rounds)


def action_distributions(policy: Policy, bundle: Bundle, users: np.ndarray, history: np.ndarray, behaviours: np.ndarray,
                         env_options: dict | None = None) -> np.ndarray:  # fmt: skip
    """π(a | logged state) for each round, shape (n, n_items, 1) float32 (one-hot for deterministic policies)."""
    n = len(users)
    if isinstance(policy, RandomPolicy):
        return np.full((n, bundle.seq.n_items, 1), 1.0 / bundle.seq.n_items, np.float32)
    sessions = BatchedSessions(bundle, EnvConfig(**(env_options or {"action_mode": "item"})), n)
    sessions.start_from(users, history, behaviours)
    items = sessions.recommended_items(policy.act(_observation(sessions), sessions)).reshape(n, -1)[:, 0].numpy()
    dist = np.zeros((n, bundle.seq.n_items, 1), np.float32)
    dist[np.arange(n), items, 0] = 1.0
    return dist


def _observation(sessions: BatchedSessions):
    return sessions.observation()


def estimate_all(feedback: LoggedFeedback, action_dist: np.ndarray, q_hat: np.ndarray, seed: int = 0,
                 n_bootstrap: int = 1000) -> dict[str, dict]:  # fmt: skip
    """Every estimator's value and 95% bootstrap CI for one target policy.

    Each entry also carries the policy's importance-weight ESS and max weight and its
    ``flags`` (:mod:`seqrec.ope.diagnostics`): what the log cannot support.
    """
    inputs = dict(reward=feedback.reward, action=feedback.action, pscore=feedback.pscore, action_dist=action_dist,
                  estimated_rewards_by_reg_model=q_hat)  # fmt: skip
    weights = weight_diagnostics(feedback.action, feedback.pscore, action_dist)
    out = {}
    for est in ESTIMATORS:
        try:
            value = est.estimate_policy_value(**inputs)
            ci = est.estimate_interval(**inputs, n_bootstrap_samples=n_bootstrap, random_state=seed)
            out[est.estimator_name] = {"estimate": float(value), "ci95": [float(ci["lower"]), float(ci["upper"])]}
        except ValueError as err:  # e.g. replay with no matching round
            out[est.estimator_name] = {"estimate": float("nan"), "ci95": [float("nan")] * 2, "error": str(err)}
        entry = out[est.estimator_name]
        entry.update(ess=weights["ess"], max_weight=weights["max_weight"],
                     flags=weights["flags"] + estimate_flags(est.estimator_name, entry["estimate"], feedback.reward))  # fmt: skip
    return out


@dataclass
class ValidateConfig:
    """The simulated logging experiment of ``seqrec ope validate``."""

    rounds: tuple[int, ...] = (1_000, 10_000, 100_000)
    """Numbers of logged rounds to compare."""
    repeats: int = 10
    """Independent logs per size (CI coverage is the share of repeats whose CI holds the truth)."""
    logging_temperature: float = 2.0
    """Logging policy: softmax(encoder scores / T) mixed with uniform ``epsilon``."""
    epsilon: float = 0.1
    seed: int = 0
    n_bootstrap: int = 500
    reward_model: ItemRateModel = field(default_factory=lambda: ItemRateModel(prior_strength=5.0))
    """The DM / DR model fitted on each simulated log (5 pseudo-rounds: its logs are small)."""


def validate(bundle: Bundle, target: Policy, config: ValidateConfig = ValidateConfig(), progress: bool = True) -> dict:
    """Log rounds in the simulator with a known logging policy; compare estimates with the truth.

    Each round: a user drawn uniformly starts from their logged state (as an episode's first
    step), the logging policy draws an item, the simulator draws the click. The target's true
    value is exact: the mean over users of Σ_a π(a|x) P(click | x, a).
    """
    seq, n_items = bundle.seq, bundle.seq.n_items
    users = np.arange(seq.n_users)
    hist, beh = seq.user_histories(users, bundle.encoder.config.max_len, upto="valid")
    sessions = BatchedSessions(bundle, EnvConfig(action_mode="item"), len(users))
    sessions.start_from(users, hist, beh.astype(np.int64))
    with torch.inference_mode():
        p_click = sessions.simulator.click_probability(sessions.state, torch.arange(n_items).expand(len(users), -1)).double().numpy()
        logits = bundle.encoder.scores(sessions.emb).double() / config.logging_temperature
    pi_log = ((1 - config.epsilon) * torch.softmax(logits, 1) + config.epsilon / n_items).numpy()
    pi_target = action_distributions(target, bundle, users, hist, beh.astype(np.int64))[:, :, 0].astype(np.float64)
    truth = float((pi_target * p_click).sum(1).mean())
    rng = np.random.default_rng(config.seed)
    rows = []
    cum_log = np.cumsum(pi_log, axis=1)
    for n in config.rounds:
        per_est: dict[str, list] = {}
        for rep in range(config.repeats):
            u = rng.integers(0, len(users), n)
            a = np.minimum((cum_log[u] < rng.random(n)[:, None]).sum(1), n_items - 1)
            r = (rng.random(n) < p_click[u, a]).astype(np.float64)
            fb = LoggedFeedback(action=a, reward=r, pscore=pi_log[u, a], n_actions=n_items, user=u, propensity_source="known")
            q_hat = config.reward_model.fit(a, r, n_items)
            res = estimate_all(fb, pi_target[u][:, :, None].astype(np.float32), config.reward_model.predict(q_hat, n),
                               seed=config.seed + rep, n_bootstrap=config.n_bootstrap)  # fmt: skip
            for name, v in res.items():
                per_est.setdefault(name, []).append(v)
        for name, vals in per_est.items():
            est = np.array([v["estimate"] for v in vals])
            cover = np.array([v["ci95"][0] <= truth <= v["ci95"][1] for v in vals])
            rows.append({"rounds": n, "estimator": name, "mean_estimate": float(np.nanmean(est)),
                         "relative_error": float(np.nanmean(np.abs(est - truth)) / truth), "ci_coverage": float(cover.mean())})  # fmt: skip
        if progress:
            print(f"  {n:>7} rounds done")
    return {"truth": truth, "target": target.name, "logging": {"temperature": config.logging_temperature, "epsilon": config.epsilon},
            "repeats": config.repeats, "rows": rows}  # fmt: skip
