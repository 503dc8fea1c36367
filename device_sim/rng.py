"""Counter-based randomness: a number is a pure function of (seed, sensor, occurrence, stream).

So a reading is the same whichever process computes it, in whatever tick: same seed, same
readings.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_G = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def uniform(seed: int, a: Any, b: Any, stream: int) -> np.ndarray:
    """Uniform [0, 1) numbers, a pure function of (seed, a, b, stream)."""
    with np.errstate(over="ignore"):
        x = (np.asarray(a, np.int64).astype(np.uint64) * _G
             + _mix(np.asarray(b, np.int64).astype(np.uint64) + np.uint64(stream) * _M2)
             + np.uint64(seed & 0xFFFFFFFF) * _M1)
        x = _mix(x)
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def normal(seed: int, a: Any, b: Any, stream: int) -> np.ndarray:
    """Standard normal numbers, a pure function of (seed, a, b, stream)."""
    u1 = np.maximum(uniform(seed, a, b, stream), 1e-12)
    u2 = uniform(seed, a, b, stream + 7919)
    return np.sqrt(-2 * np.log(u1)) * np.cos(2 * math.pi * u2)
