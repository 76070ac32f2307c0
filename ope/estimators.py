"""Off-policy estimators of a target policy's value from logged bandit feedback.

The estimators follow the Open Bandit Pipeline convention (``obp.ope``): each one is a
``@dataclass`` whose fields are its hyperparameters, and all share one interface fixed by
:class:`BaseOffPolicyEstimator`:

* ``_estimate_round_rewards(...) -> ndarray (n_rounds,)``: the per-round terms whose mean is
  the estimate;
* ``estimate_policy_value(...) -> float``;
* ``estimate_interval(..., alpha=0.05, n_bootstrap_samples=2000, random_state=None)
  -> {"mean", "lower", "upper"}``: a percentile bootstrap confidence interval.

The inputs, their shapes and checks are listed in :mod:`seqrec.ope.checks`. Every estimator accepts the full set of arrays, so one loop can call them all with the
same keyword arguments; an estimator ignores (and does not validate) the arrays it does
not use, and raises if one it needs is missing. Bad input raises
:class:`~seqrec.infra.errors.SeqrecError` (a ``ValueError``) with a one-line message naming
the array.

The estimators make no ``(n, A)`` temporaries: the importance weight is read with
``action_dist[np.arange(n), action, 0]`` and the model term is one ``einsum``, so a point
estimate on 100,000 rounds with 1,000 actions takes well under a second
(``benchmarks/ope_speed.py``).

>>> import numpy as np
>>> from seqrec.ope.estimators import InverseProbabilityWeighting
>>> reward = np.array([1.0, 0.0, 1.0, 1.0])
>>> action = np.array([0, 1, 1, 0])
>>> pscore = np.full(4, 0.5)
>>> action_dist = np.array([[1.0, 0.0]] * 4)[:, :, None]  # always play action 0
>>> InverseProbabilityWeighting().estimate_policy_value(
...     reward=reward, action=action, pscore=pscore, action_dist=action_dist)
1.0

References
----------
Miroslav Dudík, Dumitru Erhan, John Langford, Lihong Li.
"Doubly Robust Policy Evaluation and Optimization.", Statistical Science, 2014.

Yu-Xiang Wang, Alekh Agarwal, Miroslav Dudík.
"Optimal and Adaptive Off-policy Evaluation in Contextual Bandits.", ICML, 2017.

Lihong Li, Wei Chu, John Langford, Xuanhui Wang.
"Unbiased Offline Evaluation of Contextual-bandit-based News Article Recommendation
Algorithms.", WSDM, 2011.

Adith Swaminathan, Thorsten Joachims.
"The Self-Normalized Estimator for Counterfactual Learning.", NeurIPS, 2015.

Yuta Saito, Shunsuke Aihara, Megumi Matsutani, Yusuke Narita.
"Open Bandit Dataset and Pipeline: Towards Realistic and Reproducible Off-Policy
Evaluation.", NeurIPS Datasets and Benchmarks, 2021.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from seqrec.infra.errors import SeqrecError
from seqrec.ope.base import BaseOffPolicyEstimator, RatioEstimator
from seqrec.ope.checks import check_estimator_name, check_hyperparameter_number, check_ope_inputs

__all__ = [
    "BaseOffPolicyEstimator",
    "DirectMethod",
    "InverseProbabilityWeighting",
    "SelfNormalizedIPS",
    "DoublyRobust",
    "SwitchDoublyRobust",
    "Replay",
    "importance_weights",
]


def importance_weights(action: np.ndarray, pscore: np.ndarray, action_dist: np.ndarray) -> np.ndarray:
    """``w_i = pi_e(a_i | x_i) / pi_0(a_i | x_i)``, shape ``(n_rounds,)``."""
    return action_dist[np.arange(action.shape[0]), action, 0] / pscore


def _model_value(action_dist: np.ndarray, estimated_rewards_by_reg_model: np.ndarray) -> np.ndarray:
    """``q_hat(x_i, pi_e) = sum_a pi_e(a | x_i) q_hat(x_i, a)``, shape ``(n_rounds,)``; no (n, A) temporary."""
    return np.einsum("ijk,ijk->i", action_dist, estimated_rewards_by_reg_model).astype(np.float64, copy=False)


def _logged_model_reward(action: np.ndarray, estimated_rewards_by_reg_model: np.ndarray) -> np.ndarray:
    """``q_hat(x_i, a_i)``, shape ``(n_rounds,)``."""
    return estimated_rewards_by_reg_model[np.arange(action.shape[0]), action, 0]


# ----------------------------------------------------------------------------------------
# Estimators
# ----------------------------------------------------------------------------------------


@dataclass
class DirectMethod(BaseOffPolicyEstimator):
    r"""Direct Method (DM): the reward model's value of the target policy.

    .. math::

        \hat{V}_{\mathrm{DM}}(\pi_e) = \frac{1}{n} \sum_{i=1}^{n} \sum_{a} \pi_e(a \mid x_i)\, \hat{q}(x_i, a)

    Low variance, biased as much as the reward model is wrong.

    Needs ``reward`` and ``action`` (for the round count only), ``action_dist``
    ``(n_rounds, n_actions, 1)`` and ``estimated_rewards_by_reg_model``
    ``(n_rounds, n_actions, 1)``.

    :param estimator_name: name used in result tables.

    References: Beygelzimer & Langford, "The Offset Tree for Learning with Partial Labels",
    KDD 2009; Dudík et al., "Doubly Robust Policy Evaluation and Optimization", 2014.
    """

    estimator_name: str = "dm"
    required_inputs: ClassVar[tuple[str, ...]] = ("reward", "action", "action_dist", "estimated_rewards_by_reg_model")

    def __post_init__(self) -> None:
        check_estimator_name(self.estimator_name)

    def _estimate_round_rewards(
        self, *, action_dist: np.ndarray, estimated_rewards_by_reg_model: np.ndarray, **_: np.ndarray
    ) -> np.ndarray:
        return _model_value(action_dist, estimated_rewards_by_reg_model)


@dataclass
class InverseProbabilityWeighting(BaseOffPolicyEstimator):
    r"""Inverse Probability Weighting (IPS / IPW), with optional weight clipping.

    .. math::

        \hat{V}_{\mathrm{IPS}}(\pi_e) = \frac{1}{n} \sum_{i=1}^{n} \min\{w_i, \lambda\}\, r_i,
        \qquad w_i = \frac{\pi_e(a_i \mid x_i)}{\pi_0(a_i \mid x_i)}

    Unbiased when ``lambda_`` is infinite and the logging policy covers the target
    policy; clipping trades bias for variance.

    Needs ``reward``, ``action``, ``pscore`` ``(n_rounds,)`` and ``action_dist``
    ``(n_rounds, n_actions, 1)``.

    :param lambda_: clipping threshold on the importance weight, ``>= 0``; default ``inf``
        (no clipping).
    :param estimator_name: name used in result tables.

    References: Precup, Sutton & Singh, "Eligibility Traces for Off-Policy Policy
    Evaluation", ICML 2000; Strehl et al., "Learning from Logged Implicit Exploration
    Data", NeurIPS 2010.
    """

    lambda_: float = np.inf
    estimator_name: str = "ips"
    required_inputs: ClassVar[tuple[str, ...]] = ("reward", "action", "pscore", "action_dist")

    def __post_init__(self) -> None:
        self.lambda_ = check_hyperparameter_number(self.lambda_, "lambda_")
        check_estimator_name(self.estimator_name)

    def _weights(self, action: np.ndarray, pscore: np.ndarray, action_dist: np.ndarray) -> np.ndarray:
        w = importance_weights(action, pscore, action_dist)
        return np.minimum(w, self.lambda_) if np.isfinite(self.lambda_) else w

    def _estimate_round_rewards(
        self, *, reward: np.ndarray, action: np.ndarray, pscore: np.ndarray, action_dist: np.ndarray, **_: np.ndarray
    ) -> np.ndarray:
        return reward * self._weights(action, pscore, action_dist)


@dataclass
class SelfNormalizedIPS(RatioEstimator, InverseProbabilityWeighting):
    r"""Self-Normalized IPS (SNIPS): IPS divided by the mean importance weight.

    .. math::

        \hat{V}_{\mathrm{SNIPS}}(\pi_e) = \frac{\sum_{i=1}^{n} w_i r_i}{\sum_{i=1}^{n} w_i},
        \qquad \text{round rewards } \frac{w_i r_i}{\frac{1}{n}\sum_j w_j}

    Slightly biased, but bounded by the reward range and often far less variable than
    IPS. The bootstrap resamples ``w_i r_i`` and ``w_i`` together (a ratio estimate per
    resample) rather than fixing the full-sample denominator. Raises if every weight is 0.

    Needs ``reward``, ``action``, ``pscore`` ``(n_rounds,)`` and ``action_dist``
    ``(n_rounds, n_actions, 1)``.

    :param lambda_: clipping threshold on the importance weight before normalising;
        default ``inf``.
    :param estimator_name: name used in result tables.

    References: Swaminathan & Joachims, "The Self-Normalized Estimator for Counterfactual
    Learning", NeurIPS 2015.
    """

    estimator_name: str = "snips"

    def _bootstrap_terms(
        self, *, reward: np.ndarray, action: np.ndarray, pscore: np.ndarray, action_dist: np.ndarray, **_: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        w = self._weights(action, pscore, action_dist)
        if not w.any():
            raise SeqrecError(
                "SNIPS is undefined: every importance weight is 0 (the target policy never picks a logged action)"
            )
        return reward * w, w



@dataclass
class DoublyRobust(BaseOffPolicyEstimator):
    r"""Doubly Robust (DR): DM plus an importance-weighted correction of the model's error.

    .. math::

        \hat{V}_{\mathrm{DR}}(\pi_e) = \frac{1}{n} \sum_{i=1}^{n}
            \Big[ \hat{q}(x_i, \pi_e) + \min\{w_i, \lambda\} \big(r_i - \hat{q}(x_i, a_i)\big) \Big],
        \qquad \hat{q}(x_i, \pi_e) = \sum_a \pi_e(a \mid x_i)\, \hat{q}(x_i, a)

    Unbiased if either the propensities or the reward model are right (and
    ``lambda_ = inf``); exact, with zero variance from the weights, if the model is perfect.

    Needs ``reward``, ``action``, ``pscore`` ``(n_rounds,)``, ``action_dist`` and
    ``estimated_rewards_by_reg_model`` ``(n_rounds, n_actions, 1)``.

    :param lambda_: clipping threshold on the importance weight, ``>= 0``; default ``inf``.
    :param estimator_name: name used in result tables.

    References: Dudík, Erhan, Langford & Li, "Doubly Robust Policy Evaluation and
    Optimization", Statistical Science 2014.
    """

    lambda_: float = np.inf
    estimator_name: str = "dr"
    required_inputs: ClassVar[tuple[str, ...]] = (
        "reward",
        "action",
        "pscore",
        "action_dist",
        "estimated_rewards_by_reg_model",
    )

    def __post_init__(self) -> None:
        self.lambda_ = check_hyperparameter_number(self.lambda_, "lambda_")
        check_estimator_name(self.estimator_name)

    def _correction_weights(self, w: np.ndarray) -> np.ndarray:
        """The weight applied to the residual ``r_i - q_hat(x_i, a_i)``."""
        return np.minimum(w, self.lambda_) if np.isfinite(self.lambda_) else w

    def _estimate_round_rewards(
        self,
        *,
        reward: np.ndarray,
        action: np.ndarray,
        pscore: np.ndarray,
        action_dist: np.ndarray,
        estimated_rewards_by_reg_model: np.ndarray,
        **_: np.ndarray,
    ) -> np.ndarray:
        w = self._correction_weights(importance_weights(action, pscore, action_dist))
        residual = reward - _logged_model_reward(action, estimated_rewards_by_reg_model)
        return _model_value(action_dist, estimated_rewards_by_reg_model) + w * residual


@dataclass
class SwitchDoublyRobust(DoublyRobust):
    r"""Switch Doubly Robust (Switch-DR): DR where the weight is small, DM where it is large.

    .. math::

        \hat{V}_{\mathrm{SwitchDR}}(\pi_e) = \frac{1}{n} \sum_{i=1}^{n}
            \Big[ \hat{q}(x_i, \pi_e) + \mathbb{1}\{w_i \le \lambda\}\, w_i \big(r_i - \hat{q}(x_i, a_i)\big) \Big]

    ``lambda_ = 0`` gives DM, ``lambda_ = inf`` gives DR.

    Needs ``reward``, ``action``, ``pscore`` ``(n_rounds,)``, ``action_dist`` and
    ``estimated_rewards_by_reg_model`` ``(n_rounds, n_actions, 1)``.

    :param lambda_: switching threshold on the importance weight, ``>= 0``; default ``inf``.
    :param estimator_name: name used in result tables.

    References: Wang, Agarwal & Dudík, "Optimal and Adaptive Off-policy Evaluation in
    Contextual Bandits", ICML 2017.
    """

    estimator_name: str = "switch-dr"

    def _correction_weights(self, w: np.ndarray) -> np.ndarray:
        return np.where(w <= self.lambda_, w, 0.0)


@dataclass
class Replay(RatioEstimator):
    r"""Replay (rejection sampling) for a deterministic target policy.

    .. math::

        \hat{V}_{\mathrm{Replay}}(\pi_e) = \frac{\sum_{i=1}^{n} \mathbb{1}\{\pi_e(x_i) = a_i\}\, r_i}
            {\sum_{i=1}^{n} \mathbb{1}\{\pi_e(x_i) = a_i\}}

    The mean reward over the rounds where the target policy's action equals the logged
    one. Unbiased when the logging policy is uniformly random; ignores ``pscore``. The
    bootstrap resamples matches and matched rewards together. Raises if no round matches.

    Needs ``reward`` and ``action`` ``(n_rounds,)``, and either ``target_action``
    ``(n_rounds,)`` int or ``action_dist`` ``(n_rounds, n_actions, 1)`` (its argmax per
    round, ties to the lowest action, is the target action). ``target_action`` wins if
    both are given.

    :param estimator_name: name used in result tables.

    References: Li, Chu, Langford & Wang, "Unbiased Offline Evaluation of
    Contextual-bandit-based News Article Recommendation Algorithms", WSDM 2011.
    """

    estimator_name: str = "replay"
    required_inputs: ClassVar[tuple[str, ...]] = ("reward", "action")

    def __post_init__(self) -> None:
        check_estimator_name(self.estimator_name)

    def _validated(self, **arrays: object) -> dict[str, np.ndarray]:  # type: ignore[override]
        target_action = arrays.get("target_action")
        action_dist = arrays.get("action_dist")
        if target_action is None and action_dist is None:
            raise SeqrecError("Replay needs target_action or action_dist; got neither")
        inputs = check_ope_inputs(
            reward=arrays.get("reward"),
            action=arrays.get("action"),
            target_action=target_action,
            action_dist=action_dist if target_action is None else None,
        )
        if "target_action" not in inputs:
            inputs["target_action"] = inputs.pop("action_dist")[:, :, 0].argmax(axis=1)
        for name in ("reward", "action"):
            if name not in inputs:
                raise SeqrecError(f"Replay needs {name}; got None")
        return inputs

    def _bootstrap_terms(
        self, *, reward: np.ndarray, action: np.ndarray, target_action: np.ndarray, **_: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        match = (action == target_action).astype(np.float64)
        if not match.any():
            raise SeqrecError("Replay is undefined: the target action equals the logged action in no round")
        return reward * match, match

