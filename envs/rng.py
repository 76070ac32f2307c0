"""Counter-based random numbers: the same (key, counter) gives the same draw, in any batch.

Each simulated user slot carries a 64-bit key; every random number it needs is a pure
function of ``(key, step, draw)`` (SplitMix64 finaliser, vectorised in numpy). So a user
behaves identically whether it is simulated alone (``SeqRecEnv``) or as one row of a
batch of 256 (``SeqRecVectorEnv``): same seed and actions, same trajectory.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a bijective avalanche hash of uint64 values (any shape)."""
    with np.errstate(over="ignore"):
        return _mix(np.asarray(x, dtype=np.uint64))


def _mix(x: np.ndarray) -> np.ndarray:
    """:func:`mix64` on a uint64 array, inside the caller's ``errstate`` (in place where it can)."""
    z = x + _GOLDEN
    z ^= z >> _S30
    z *= _M1
    z ^= z >> _S27
    z *= _M2
    z ^= z >> _S31
    return z


_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_COLUMNS: dict[int, np.ndarray] = {}
"""``mix64(1..n)``, the column hashes of :func:`uniforms`, per ``n``."""


def derive(keys: np.ndarray, *counters: int | np.ndarray) -> np.ndarray:
    """A new key per row from ``keys`` (B,) and integer counters (scalars or (B,) arrays)."""
    out = np.asarray(keys, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for c in counters:
            out = _mix(out ^ _mix(np.asarray(c, dtype=np.uint64)))
    return out


def uniforms(keys: np.ndarray, step: np.ndarray | int, n: int) -> np.ndarray:
    """``n`` uniforms in [0, 1) per row, shape (B, n), a pure function of (key, step, column)."""
    if len(keys) == 1 and n <= 16:  # one slot (the single env): the same bits from Python ints, without array overhead
        return _uniforms_one(int(keys[0]), int(np.asarray(step).reshape(-1)[0]), n)
    if n not in _COLUMNS:
        _COLUMNS[n] = mix64(np.arange(1, n + 1, dtype=np.uint64))
    base = derive(keys, step)
    with np.errstate(over="ignore"):
        bits = _mix(base[:, None] ^ _COLUMNS[n][None, :])
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


_MASK = 2**64 - 1


def _mix_int(z: int) -> int:
    """:func:`mix64` of one value as a Python int (the same bits)."""
    z = (z + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def _uniforms_one(key: int, step: int, n: int) -> np.ndarray:
    """:func:`uniforms` of one row, shape (1, n)."""
    base = _mix_int(key ^ _mix_int(step & _MASK))
    cols = _COLUMN_INTS.get(n) or _COLUMN_INTS.setdefault(n, [_mix_int(c) for c in range(1, n + 1)])
    return np.array([[(_mix_int(base ^ c) >> 11) * (1.0 / 9007199254740992.0) for c in cols]])


_COLUMN_INTS: dict[int, list[int]] = {}


def seed_keys(seed: int, n: int) -> np.ndarray:
    """Keys of ``n`` slots for a vector env seeded with ``seed``: slot i behaves like a
    single env seeded with ``seed + i`` (Gymnasium's convention for vector seeds)."""
    return mix64(np.uint64(seed) + np.arange(n, dtype=np.uint64))
