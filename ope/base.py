"""The interface every off-policy estimator implements, and its percentile bootstrap.

An estimator is a ``@dataclass`` whose fields are its hyperparameters (the Open Bandit
Pipeline's ``obp.ope`` convention). Every estimator takes the same keyword arguments
(:mod:`seqrec.ope.checks` lists them with their shapes), so one loop can call them all;
it reads the arrays named in ``required_inputs`` and ignores the rest.
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from seqrec.infra.errors import SeqrecError
from seqrec.ope.checks import INPUT_NAMES, check_ope_inputs, check_random_state

__all__ = ["BaseOffPolicyEstimator", "RatioEstimator"]

#: Bootstrap resamples are drawn in blocks of about this many indices: int32 indices plus
#: one gathered copy, ~12 MB, which bounds memory and is faster than larger blocks.
_BOOTSTRAP_CHUNK_ELEMENTS = 2**20


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
        target_action: np.ndarray | None = None,
    ) -> float:
        """Estimate the target policy's value.

        :param reward: array-like, shape ``(n_rounds,)``; observed rewards.
        :param action: int array-like, shape ``(n_rounds,)``; logged actions.
        :param action_dist: array-like, shape ``(n_rounds, n_actions, 1)``; target policy.
        :param pscore: array-like, shape ``(n_rounds,)``; logging propensities of the logged
            actions (needed by IPS, SNIPS, DR, Switch-DR; ignored otherwise).
        :param estimated_rewards_by_reg_model: array-like, shape ``(n_rounds, n_actions, 1)``;
            reward model (needed by DM, DR, Switch-DR; ignored otherwise).
        :param target_action: int array-like, shape ``(n_rounds,)``; a deterministic target's
            action (read by Replay instead of the argmax of ``action_dist``; ignored otherwise).
        :returns: the estimated policy value.
        """
        arrays = locals()  # the keyword arguments, first thing: every estimator takes the same ones
        return self._point_estimate(self._validated(**{name: arrays[name] for name in INPUT_NAMES}))

    def estimate_interval(
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
        """Percentile-bootstrap confidence interval of the policy value.

        Arrays as in :meth:`estimate_policy_value`.

        :param alpha: the interval covers ``1 - alpha``; in ``(0, 1)``.
        :param n_bootstrap_samples: number of resamples of the rounds (with replacement).
        :param random_state: seed or ``numpy.random.Generator``; the same seed gives the
            same interval.
        :returns: ``{"mean": mean of the bootstrap estimates, "lower": alpha/2 quantile,
            "upper": 1 - alpha/2 quantile}``.
        """
        arrays = locals()
        return self._bootstrap_interval(self._validated(**{name: arrays[name] for name in INPUT_NAMES}), alpha, n_bootstrap_samples, random_state)

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
        rng = check_random_state(random_state)
        terms = [np.ascontiguousarray(t, dtype=np.float64) for t in self._bootstrap_terms(**inputs)]
        estimates = self._statistic(tuple(_bootstrap_means(terms, int(n_bootstrap_samples), rng)))
        estimates = estimates[np.isfinite(estimates)]  # a ratio resample with denominator 0
        if estimates.size == 0:
            raise SeqrecError(f"{type(self).__name__}: no bootstrap resample gave a finite estimate")
        lower, upper = np.quantile(estimates, [alpha / 2, 1 - alpha / 2])
        return {"mean": float(estimates.mean()), "lower": float(lower), "upper": float(upper)}


class RatioEstimator(BaseOffPolicyEstimator):
    """An estimate that is a ratio of two means (SNIPS, Replay).

    :meth:`_bootstrap_terms` returns ``(numerator, denominator)`` per round; the bootstrap
    resamples both together (a ratio per resample), and the round rewards are the
    numerator over the denominator's full-sample mean.
    """

    def _statistic(self, means: tuple[np.ndarray, ...]) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return means[0] / means[1]

    def _estimate_round_rewards(self, **inputs: np.ndarray) -> np.ndarray:
        numerator, denominator = self._bootstrap_terms(**inputs)
        return numerator / denominator.mean()


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
