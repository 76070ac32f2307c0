"""Input checks shared by the off-policy estimators: one-line errors that name the array.

Inputs (keyword-only, numpy arrays; ``n`` rounds, ``A`` actions, one position)::

    reward                          (n,)        float   observed reward of the logged action
    action                          (n,)        int     logged action, in [0, A)
    pscore                          (n,)        float   logging propensity pi_0(a_i | x_i), in (0, 1]
    action_dist                     (n, A, 1)   float   target policy pi_e(a | x_i); rows sum to 1
    estimated_rewards_by_reg_model  (n, A, 1)   float   reward model q_hat(x_i, a)
    target_action                   (n,)        int     a deterministic target's action (Replay)
"""

from __future__ import annotations

import numbers

import numpy as np

from seqrec.infra.errors import SeqrecError

__all__ = ["INPUT_NAMES", "check_array", "check_ope_inputs", "check_hyperparameter_number", "check_estimator_name", "check_random_state"]


INPUT_NAMES = ("reward", "action", "pscore", "action_dist", "estimated_rewards_by_reg_model", "target_action")
"""The arrays every estimator accepts (the table above), by keyword."""


def check_hyperparameter_number(value: object, name: str, *, allow_inf: bool = True) -> float:
    """A non-negative real hyperparameter (``lambda_``); raises naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SeqrecError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if np.isnan(value) or value < 0 or (not allow_inf and np.isinf(value)):
        bound = "a non-negative number" + ("" if allow_inf else ", finite")
        raise SeqrecError(f"{name} must be {bound}, got {value!r}")
    return value


def check_estimator_name(value: object) -> None:
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


def check_random_state(random_state: object) -> np.random.Generator:
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
