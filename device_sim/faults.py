"""Device faults: radio dropouts, stuck sensors, drifting clocks, dying batteries, bad messages.

:class:`Faults` holds the rates; :func:`stuck` picks the (time, occurrence) a stuck sensor
keeps repeating and :func:`on_the_wire` what reaches the wire: which readings arrive, their
timestamps and a ``bad`` code per reading for deliberately broken messages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from device_sim.calendar import TZ_OFFSET_S
from device_sim.rng import uniform

# bad-message codes (deliberately injected, to exercise dead letters)
BAD_NONE, BAD_RANGE, BAD_METRIC, BAD_VALUE, BAD_JSON = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class Faults:
    """Device fault rates (shares of sensors or readings); all zero means a perfect fleet."""

    dropout: float = 0.0  # share of readings lost on the radio (a seq gap)
    stuck: float = 0.0  # share of sensors repeating one value
    drift: float = 0.0  # share of sensors whose clock drifts (up to +-drift_ppm)
    drift_ppm: float = 400.0
    battery: float = 0.0  # share of sensors whose battery drains within hours, then silent
    bad: float = 0.0  # share of readings sent malformed or out of range

    @classmethod
    def default(cls) -> Faults:
        """Modest, realistic rates for demos."""
        return cls(dropout=0.002, stuck=0.002, drift=0.005, battery=0.001, bad=0.0005)



def stuck(faults: Faults, seed: int, idx: np.ndarray, k: np.ndarray, t: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray]:
    """The (time, occurrence) each reading's value is computed at: stuck sensors repeat one."""
    if not faults.stuck:
        return t, k
    hit = uniform(seed, idx, 0, 41) < faults.stuck
    return (np.where(hit, np.floor(t / 86400) * 86400 + 3600 * 3, t), np.where(hit, 0, k))


def on_the_wire(faults: Faults, seed: int, idx: np.ndarray, k: np.ndarray, t: np.ndarray,
                values: dict[str, np.ndarray], keep: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(kept readings, timestamps in seconds, bad codes); weak batteries change ``values``."""
    s = seed
    if faults.dropout:
        keep &= uniform(s, idx, k, 42) >= faults.dropout
    if faults.battery:
        weak = uniform(s, idx, 0, 43) < faults.battery
        # a weak battery lasts 2-8 hours from the start of its (city) day, then the sensor dies
        life = 3600 * (2 + 6 * uniform(s, idx, 0, 44))
        since = (t + TZ_OFFSET_S) % 86400
        left = np.clip(100 * (1 - since / life), 0, 100)
        keep &= ~(weak & (left <= 0))
        b = values["battery_pct"]
        values["battery_pct"] = np.where(weak & ~np.isnan(b), np.round(left, 1), b)
    ts = t.copy()
    if faults.drift:
        drifting = uniform(s, idx, 0, 45) < faults.drift
        ppm = faults.drift_ppm * (2 * uniform(s, idx, 0, 46) - 1)
        ts = ts + np.where(drifting, ppm * 1e-6 * (t % (30 * 86400)), 0.0)
    bad = np.zeros(len(idx), np.int8)
    if faults.bad:
        u = uniform(s, idx, k, 47)
        hit = u < faults.bad
        bad = np.where(hit, 1 + (uniform(s, idx, k, 48) * 4).astype(np.int8), 0).astype(np.int8)
    return keep, ts, bad
