"""Off-policy estimators of a target policy's value from logged bandit feedback.

The estimators follow the Open Bandit Pipeline convention (``obp.ope``): each one is a
``@dataclass`` whose fields are its hyperparameters, and all share one interface fixed by
:class:`BaseOffPolicyEstimator`:

* ``_estimate_round_rewards(...) -> ndarray (n_rounds,)``: the per-round terms whose mean is
  the estimate;
* ``estimate_policy_value(...) -> float``;
* ``estimate_interval(..., alpha=0.05, n_bootstrap_samples=2000, random_state=None)
  -> {"mean", "lower", "upper"}``: a percentile bootstrap confidence interval.

Inputs (keyword-only, numpy arrays; ``n`` rounds, ``A`` actions, one position)::

    reward                          (n,)        float   observed reward of the logged action
    action                          (n,)        int     logged action, in [0, A)
    pscore                          (n,)        float   logging propensity pi_0(a_i | x_i), in (0, 1]
    action_dist                     (n, A, 1)   float   target policy pi_e(a | x_i); rows sum to 1
    estimated_rewards_by_reg_model  (n, A, 1)   float   reward model q_hat(x_i, a)

Every estimator accepts the full set of arrays, so one loop can call them all with the
same keyword arguments; an estimator ignores (and does not validate) the arrays it does
not use, and raises if one it needs is missing. Bad input raises
:class:`~seqrec.data.errors.SeqrecError` (a ``ValueError``) with a one-line message naming
the array.

The estimators make no ``(n, A)`` temporaries: the importance weight is read with
``action_dist[np.arange(n), action, 0]`` and the model term is one ``einsum``, so a point
estimate on 100,000 rounds with 1,000 actions takes well under a second
(``benchmarks/ope_speed.py``).

>>> import numpy as np
>>> from seqrec.agents.ope import InverseProbabilityWeighting
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

import numbers
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from seqrec.data.errors import SeqrecError

__all__ = [
    "BaseOffPolicyEstimator",
    "DirectMethod",
    "InverseProbabilityWeighting",
    "SelfNormalizedIPS",
    "DoublyRobust",
    "SwitchDoublyRobust",
    "Replay",
    "check_array",
    "check_ope_inputs",
]

#: Bootstrap resamples are drawn in blocks of about this many indices: int32 indices plus
#: one gathered copy, ~12 MB, which bounds memory and is faster than larger blocks.
_BOOTSTRAP_CHUNK_ELEMENTS = 2**20


# ----------------------------------------------------------------------------------------
# Validation helpers
# ----------------------------------------------------------------------------------------


def _check_hyperparameter_number(value: object, name: str, *, allow_inf: bool = True) -> float:
    """A non-negative real hyperparameter (``lambda_``); raises naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SeqrecError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if np.isnan(value) or value < 0 or (not allow_inf and np.isinf(value)):
        bound = "a non-negative number" + ("" if allow_inf else ", finite")
        raise SeqrecError(f"{name} must be {bound}, got {value!r}")
    return value


def _check_estimator_name(value: object) -> None:
    if not isinstance(value, str) or not value:
        raise SeqrecError(f"estimator_name must be a non-empty string, got {value!r}")


def check_array(array: object, name: str, expected_dim: int) -> np.ndarray:
    """Return ``array`` as a numeric numpy array with ``expected_dim`` dimensions.

    :param array: the input; lists are converted, numpy arrays are not copied.
    :param name: the argument name, used in the error message.
    :param expected_dim: the required ``ndim``.
    :raises SeqrecError: not array-like, not numeric (bool counts as not numeric), or of
        the wrong dimension.
    """
    arr = np.asarray(array)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise SeqrecError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim != expected_dim:
        hint = ""
        if name in ("action_dist", "estimated_rewards_by_reg_model") and arr.ndim == 2:
            hint = f"; add the position axis with {name}[:, :, None]"
        raise SeqrecError(f"{name} must be {expected_dim}-dimensional, got shape {arr.shape}{hint}")
    return arr


def _check_finite(arr: np.ndarray, name: str) -> None:
    # min/max propagate NaN and expose +-inf without an (n, A) boolean temporary.
    if arr.size and not (np.isfinite(arr.min()) and np.isfinite(arr.max())):
        bad = np.flatnonzero(~np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1))[0]
        raise SeqrecError(f"{name} must be finite; round {bad} holds NaN or inf")


def _check_integer_actions(arr: np.ndarray, name: str) -> None:
    if not np.issubdtype(arr.dtype, np.integer):
        raise SeqrecError(f"{name} must hold integers, got dtype {arr.dtype}")


def check_ope_inputs(
    *,
    reward: object | None = None,
    action: object | None = None,
    pscore: object | None = None,
    action_dist: object | None = None,
    estimated_rewards_by_reg_model: object | None = None,
    target_action: object | None = None,
) -> dict[str, np.ndarray]:
    """Validate the arrays that are given and return them as numpy arrays.

    Checks: each array's dimension and numeric dtype; one common length ``n_rounds``;
    ``reward`` finite; ``action`` / ``target_action`` integers in ``[0, n_actions)``
    (``n_actions`` from ``action_dist`` or ``estimated_rewards_by_reg_model`` when given);
    ``pscore`` in ``(0, 1]``; ``action_dist`` of shape ``(n_rounds, n_actions, 1)``,
    non-negative, rows summing to 1 (``atol`` 1e-6 for float64, 1e-4 otherwise);
    ``estimated_rewards_by_reg_model`` finite and of the same shape as ``action_dist``.

    :returns: ``{name: ndarray}`` for each array that was not ``None``.
    :raises SeqrecError: with a one-line message naming the array and the problem.
    """
    given = {
        "reward": (reward, 1),
        "action": (action, 1),
        "pscore": (pscore, 1),
        "action_dist": (action_dist, 3),
        "estimated_rewards_by_reg_model": (estimated_rewards_by_reg_model, 3),
        "target_action": (target_action, 1),
    }
    out = {name: check_array(value, name, dim) for name, (value, dim) in given.items() if value is not None}
    if not out:
        raise SeqrecError("no input arrays given")

    # One length for all.
    lengths = {name: arr.shape[0] for name, arr in out.items()}
    first_name, n_rounds = next(iter(lengths.items()))
    for name, length in lengths.items():
        if length != n_rounds:
            raise SeqrecError(
                f"{name} has {length} rounds but {first_name} has {n_rounds}; all arrays must have the same length"
            )
    if n_rounds == 0:
        raise SeqrecError(f"{first_name} is empty; need at least one round")

    n_actions = None
    for name in ("action_dist", "estimated_rewards_by_reg_model"):
        if name in out:
            arr = out[name]
            if arr.shape[2] != 1:
                raise SeqrecError(
                    f"{name} must have shape (n_rounds, n_actions, 1), got {arr.shape}; only one position is supported"
                )
            if n_actions is None:
                n_actions = arr.shape[1]
            elif arr.shape[1] != n_actions:
                raise SeqrecError(
                    f"{name} has {arr.shape[1]} actions but action_dist has {n_actions}; shapes must match"
                )
    if n_actions == 0:
        raise SeqrecError("action_dist has zero actions")

    if "reward" in out:
        _check_finite(out["reward"], "reward")

    for name in ("action", "target_action"):
        if name in out:
            arr = out[name]
            _check_integer_actions(arr, name)
            low = int(arr.min())
            if low < 0:
                raise SeqrecError(f"{name} must be non-negative; round {int(np.argmin(arr))} is {low}")
            if n_actions is not None and int(arr.max()) >= n_actions:
                bad = int(np.flatnonzero(arr >= n_actions)[0])
                raise SeqrecError(
                    f"{name} must be in [0, {n_actions}) (n_actions from action_dist); round {bad} is {int(arr[bad])}"
                )

    if "pscore" in out:
        ps = out["pscore"]
        bad_mask = ~((ps > 0) & (ps <= 1))  # also catches NaN
        if bad_mask.any():
            bad = int(np.flatnonzero(bad_mask)[0])
            raise SeqrecError(f"pscore must be in (0, 1]; round {bad} is {ps[bad].item()!r}")

    if "action_dist" in out:
        ad = out["action_dist"]
        low = ad.min()
        if not low >= 0:  # NaN fails too
            flat = ad.reshape(n_rounds, -1)
            bad = int(np.flatnonzero(~(flat >= 0).all(axis=1))[0])
            raise SeqrecError(f"action_dist must be non-negative and not NaN; round {bad} is not")
        atol = 1e-6 if ad.dtype == np.float64 else 1e-4
        sums = ad.sum(axis=1)[:, 0]
        off = np.abs(sums - 1.0) > atol
        if off.any():
            bad = int(np.flatnonzero(off)[0])
            raise SeqrecError(
                f"action_dist rows must sum to 1 over the action axis (atol {atol:g}); "
                f"round {bad} sums to {sums[bad]:.6g}"
            )

    if "estimated_rewards_by_reg_model" in out:
        _check_finite(out["estimated_rewards_by_reg_model"], "estimated_rewards_by_reg_model")

    return out


def _check_random_state(random_state: object) -> np.random.Generator:
    if random_state is None or isinstance(random_state, (numbers.Integral, np.random.SeedSequence)):
        if isinstance(random_state, bool):
            raise SeqrecError(f"random_state must be None, an int or a numpy Generator, got {random_state!r}")
        if isinstance(random_state, numbers.Integral) and random_state < 0:
            raise SeqrecError(f"random_state must be a non-negative int, got {random_state!r}")
        return np.random.default_rng(random_state)
    if isinstance(random_state, np.random.Generator):
        return random_state
    raise SeqrecError(
        f"random_state must be None, an int or a numpy Generator, got {random_state!r} ({type(random_state).__name__})"
    )


# ----------------------------------------------------------------------------------------
# Base class
# ----------------------------------------------------------------------------------------


class BaseOffPolicyEstimator(ABC):
    """The interface every estimator implements.

    A subclass declares the arrays it needs in ``required_inputs`` and implements
    :meth:`_estimate_round_rewards`; the estimate is the mean of those round rewards.
    Ratio estimators (SNIPS, Replay) also override :meth:`_bootstrap_terms` and
    :meth:`_statistic` so the bootstrap resamples numerator and denominator together.
    """

    #: The arrays ``_estimate_round_rewards`` reads, in addition to none other.
    required_inputs: ClassVar[tuple[str, ...]] = ()
    estimator_name: str

    # --- hooks -----------------------------------------------------------------------

    @abstractmethod
    def _estimate_round_rewards(self, **inputs: np.ndarray) -> np.ndarray:
        """Per-round terms, shape ``(n_rounds,)``; their mean is the estimate."""

    def _bootstrap_terms(self, **inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        """Per-round arrays whose resampled means feed :meth:`_statistic`."""
        return (self._estimate_round_rewards(**inputs),)

    def _statistic(self, means: tuple[np.ndarray, ...]) -> np.ndarray:
        """Estimate(s) from the means of :meth:`_bootstrap_terms` (each scalar or ``(B,)``)."""
        return means[0]

    # --- public interface --------------------------------------------------------------

    def _validated(self, **arrays: object) -> dict[str, np.ndarray]:
        missing = [name for name in self.required_inputs if arrays.get(name) is None]
        if missing:
            raise SeqrecError(f"{type(self).__name__} needs {', '.join(missing)}; got None")
        return check_ope_inputs(**{name: arrays[name] for name in self.required_inputs})

    def estimate_policy_value(
        self,
        *,
        reward: np.ndarray,
        action: np.ndarray,
        action_dist: np.ndarray | None = None,
        pscore: np.ndarray | None = None,
        estimated_rewards_by_reg_model: np.ndarray | None = None,
    ) -> float:
        """Estimate the target policy's value.

        :param reward: array-like, shape ``(n_rounds,)``; observed rewards.
        :param action: int array-like, shape ``(n_rounds,)``; logged actions.
        :param action_dist: array-like, shape ``(n_rounds, n_actions, 1)``; target policy.
        :param pscore: array-like, shape ``(n_rounds,)``; logging propensities of the logged
            actions (needed by IPS, SNIPS, DR, Switch-DR; ignored otherwise).
        :param estimated_rewards_by_reg_model: array-like, shape ``(n_rounds, n_actions, 1)``;
            reward model (needed by DM, DR, Switch-DR; ignored otherwise).
        :returns: the estimated policy value.
        """
        inputs = self._validated(
            reward=reward,
            action=action,
            action_dist=action_dist,
            pscore=pscore,
            estimated_rewards_by_reg_model=estimated_rewards_by_reg_model,
        )
        return self._point_estimate(inputs)

    def estimate_interval(
        self,
        *,
        reward: np.ndarray,
        action: np.ndarray,
        action_dist: np.ndarray | None = None,
        pscore: np.ndarray | None = None,
        estimated_rewards_by_reg_model: np.ndarray | None = None,
        alpha: float = 0.05,
        n_bootstrap_samples: int = 2000,
        random_state: int | np.random.Generator | None = None,
    ) -> dict[str, float]:
        """Percentile-bootstrap confidence interval of the policy value.

        Arrays as in :meth:`estimate_policy_value`.

        :param alpha: the interval covers ``1 - alpha``; in ``(0, 1)``.
        :param n_bootstrap_samples: number of resamples of the rounds (with replacement).
        :param random_state: seed or ``numpy.random.Generator``; the same seed gives the
            same interval.
        :returns: ``{"mean": mean of the bootstrap estimates, "lower": alpha/2 quantile,
            "upper": 1 - alpha/2 quantile}``.
        """
        inputs = self._validated(
            reward=reward,
            action=action,
            action_dist=action_dist,
            pscore=pscore,
            estimated_rewards_by_reg_model=estimated_rewards_by_reg_model,
        )
        return self._bootstrap_interval(inputs, alpha, n_bootstrap_samples, random_state)

    # --- shared machinery ----------------------------------------------------------------

    def _point_estimate(self, inputs: dict[str, np.ndarray]) -> float:
        terms = self._bootstrap_terms(**inputs)
        return float(self._statistic(tuple(t.mean() for t in terms)))

    def _bootstrap_interval(
        self,
        inputs: dict[str, np.ndarray],
        alpha: float,
        n_bootstrap_samples: int,
        random_state: int | np.random.Generator | None,
    ) -> dict[str, float]:
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 < alpha < 1:
            raise SeqrecError(f"alpha must be in (0, 1), got {alpha!r}")
        if (
            isinstance(n_bootstrap_samples, bool)
            or not isinstance(n_bootstrap_samples, numbers.Integral)
            or n_bootstrap_samples < 1
        ):
            raise SeqrecError(f"n_bootstrap_samples must be a positive int, got {n_bootstrap_samples!r}")
        rng = _check_random_state(random_state)
        terms = [np.ascontiguousarray(t, dtype=np.float64) for t in self._bootstrap_terms(**inputs)]
        estimates = self._statistic(tuple(_bootstrap_means(terms, int(n_bootstrap_samples), rng)))
        estimates = estimates[np.isfinite(estimates)]  # a ratio resample with denominator 0
        if estimates.size == 0:
            raise SeqrecError(f"{type(self).__name__}: no bootstrap resample gave a finite estimate")
        lower, upper = np.quantile(estimates, [alpha / 2, 1 - alpha / 2])
        return {"mean": float(estimates.mean()), "lower": float(lower), "upper": float(upper)}


def _bootstrap_means(terms: list[np.ndarray], n_samples: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Means of each term over ``n_samples`` resamples of the rounds; each ``(n_samples,)``.

    Indices are drawn as ``(chunk, n_rounds)`` blocks (one array op per block, no loop per
    round); every term is gathered with the same indices.
    """
    n = terms[0].shape[0]
    index_dtype = np.int32 if n < 2**31 else np.int64
    chunk = max(1, min(n_samples, _BOOTSTRAP_CHUNK_ELEMENTS // n))
    # A ratio's two terms travel as one complex array: one random access per index, not two.
    packed = [terms[0] + 1j * terms[1]] if len(terms) == 2 else terms
    means = [np.empty(n_samples, dtype=t.dtype) for t in packed]
    for start in range(0, n_samples, chunk):
        stop = min(start + chunk, n_samples)
        idx = rng.integers(0, n, size=(stop - start, n), dtype=index_dtype)
        for term, out in zip(packed, means):
            out[start:stop] = term[idx].mean(axis=1)
    return [means[0].real, means[0].imag] if len(terms) == 2 else means


def _importance_weights(action: np.ndarray, pscore: np.ndarray, action_dist: np.ndarray) -> np.ndarray:
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
        _check_estimator_name(self.estimator_name)

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
        self.lambda_ = _check_hyperparameter_number(self.lambda_, "lambda_")
        _check_estimator_name(self.estimator_name)

    def _weights(self, action: np.ndarray, pscore: np.ndarray, action_dist: np.ndarray) -> np.ndarray:
        w = _importance_weights(action, pscore, action_dist)
        return np.minimum(w, self.lambda_) if np.isfinite(self.lambda_) else w

    def _estimate_round_rewards(
        self, *, reward: np.ndarray, action: np.ndarray, pscore: np.ndarray, action_dist: np.ndarray, **_: np.ndarray
    ) -> np.ndarray:
        return reward * self._weights(action, pscore, action_dist)


@dataclass
class SelfNormalizedIPS(InverseProbabilityWeighting):
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

    def _statistic(self, means: tuple[np.ndarray, ...]) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return means[0] / means[1]

    def _estimate_round_rewards(self, **inputs: np.ndarray) -> np.ndarray:
        weighted_reward, w = self._bootstrap_terms(**inputs)
        return weighted_reward / w.mean()


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
        self.lambda_ = _check_hyperparameter_number(self.lambda_, "lambda_")
        _check_estimator_name(self.estimator_name)

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
        w = self._correction_weights(_importance_weights(action, pscore, action_dist))
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
class Replay(BaseOffPolicyEstimator):
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
        _check_estimator_name(self.estimator_name)

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

    def _statistic(self, means: tuple[np.ndarray, ...]) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return means[0] / means[1]

    def _estimate_round_rewards(self, **inputs: np.ndarray) -> np.ndarray:
        matched_reward, match = self._bootstrap_terms(**inputs)
        return matched_reward / match.mean()

    def estimate_policy_value(  # type: ignore[override]
        self,
        *,
        reward: np.ndarray,
        action: np.ndarray,
        action_dist: np.ndarray | None = None,
        pscore: np.ndarray | None = None,
        estimated_rewards_by_reg_model: np.ndarray | None = None,
        target_action: np.ndarray | None = None,
    ) -> float:
        """Mean reward over the rounds where ``target_action == action``.

        :param reward: array-like, shape ``(n_rounds,)``.
        :param action: int array-like, shape ``(n_rounds,)``; logged actions.
        :param action_dist: array-like, shape ``(n_rounds, n_actions, 1)``; used only when
            ``target_action`` is None (argmax per round).
        :param pscore: ignored (accepted so every estimator takes the same arguments).
        :param estimated_rewards_by_reg_model: ignored.
        :param target_action: int array-like, shape ``(n_rounds,)``; the target policy's action.
        """
        inputs = self._validated(reward=reward, action=action, action_dist=action_dist, target_action=target_action)
        return self._point_estimate(inputs)

    def estimate_interval(  # type: ignore[override]
        self,
        *,
        reward: np.ndarray,
        action: np.ndarray,
        action_dist: np.ndarray | None = None,
        pscore: np.ndarray | None = None,
        estimated_rewards_by_reg_model: np.ndarray | None = None,
        target_action: np.ndarray | None = None,
        alpha: float = 0.05,
        n_bootstrap_samples: int = 2000,
        random_state: int | np.random.Generator | None = None,
    ) -> dict[str, float]:
        """Percentile-bootstrap interval; arguments as in :meth:`estimate_policy_value` and
        :meth:`BaseOffPolicyEstimator.estimate_interval`."""
        inputs = self._validated(reward=reward, action=action, action_dist=action_dist, target_action=target_action)
        return self._bootstrap_interval(inputs, alpha, n_bootstrap_samples, random_state)
