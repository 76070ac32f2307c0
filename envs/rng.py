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
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def derive(keys: np.ndarray, *counters: int | np.ndarray) -> np.ndarray:
    """A new key per row from ``keys`` (B,) and integer counters (scalars or (B,) arrays)."""
    out = np.asarray(keys, dtype=np.uint64)
    for c in counters:
        with np.errstate(over="ignore"):
            out = mix64(out ^ mix64(np.asarray(c, dtype=np.uint64)))
    return out


def uniforms(keys: np.ndarray, step: np.ndarray | int, n: int) -> np.ndarray:
    """``n`` uniforms in [0, 1) per row, shape (B, n), a pure function of (key, step, column)."""
    base = derive(keys, step)
    bits = mix64(base[:, None] ^ mix64(np.arange(1, n + 1, dtype=np.uint64))[None, :])
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def seed_keys(seed: int, n: int) -> np.ndarray:
    """Keys of ``n`` slots for a vector env seeded with ``seed``: slot i behaves like a
    single env seeded with ``seed + i`` (Gymnasium's convention for vector seeds)."""
    return mix64(np.uint64(seed) + np.arange(n, dtype=np.uint64))
