"""When readings are sent: each sensor's schedule, and event reports at alarm crossings."""

from __future__ import annotations

from typing import Any

import numpy as np

from device_sim.alarms import alarm_state
from device_sim.fleet import Fleet
from device_sim.values import base_values


def _scheduled(fleet: Fleet, pos: np.ndarray, a: np.ndarray | float, b: np.ndarray | float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    phase, period = fleet.phase[pos], fleet.period[pos]
    ka = np.floor((a - phase) / period).astype(np.int64)
    kb = np.floor((b - phase) / period).astype(np.int64)
    count = np.maximum(kb - ka, 0)
    idx = np.repeat(pos, count)
    if len(idx) == 0:
        return idx, np.zeros(0, np.int64), np.zeros(0)
    first = np.repeat(ka + 1, count)
    offs = np.arange(len(idx)) - np.repeat(np.cumsum(count) - count, count)
    k = first + offs
    return idx, k, fleet.phase[idx] + k * fleet.period[idx]



def _alarm_at(fleet: Fleet, idx: np.ndarray, k: np.ndarray, t: np.ndarray,
              scenario: Any) -> np.ndarray:
    v = base_values(fleet, idx, k, t)
    silent = scenario.apply(fleet, idx, t, v)
    return alarm_state(fleet, idx, v) & ~silent


def event_times(fleet: Fleet, idx: np.ndarray, k: np.ndarray, t: np.ndarray,
                scenario: Any) -> np.ndarray:
    """Send times of readings (idx, k, scheduled t).

    A reading whose sensor entered an alarm state since its previous reading is sent at the
    crossing (to ~0.1 s), else on schedule.
    """
    if len(idx) == 0:
        return t
    prev = t - fleet.period[idx]
    ev = _alarm_at(fleet, idx, k, t, scenario) & ~_alarm_at(fleet, idx, k - 1, prev, scenario)
    out = t.copy()
    e = np.flatnonzero(ev)
    if len(e):
        ei, ek = idx[e], k[e]
        lo, hi = prev[e], t[e].copy()
        while (hi - lo).max() > 0.1:
            mid = (lo + hi) / 2
            on = _alarm_at(fleet, ei, ek, mid, scenario)
            hi = np.where(on, mid, hi)
            lo = np.where(on, lo, mid)
        out[e] = hi
    return out


def due(fleet: Fleet, a: float, b: float, scenario: Any = None
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Readings sent in the time window (a, b]: sensor positions, k, times.

    Without a scenario these are the scheduled ones.  With a scenario (anything with
    ``alarm_candidates(fleet)`` and ``apply``), a candidate sensor entering an alarm state
    sends its next reading (same ``k``) at once, not at its scheduled time (event-driven
    reporting, as real fire and gas detectors do); the schedule resumes after it.
    """
    cand = getattr(scenario, "alarm_candidates", None)
    cand = cand(fleet) if cand is not None else np.zeros(0, np.int64)
    pos = np.arange(len(fleet))
    if len(cand):
        pos = pos[~np.isin(pos, cand)]
    idx, k, t = _scheduled(fleet, pos, a, b)
    if len(cand):
        # candidates: occurrences scheduled in (a, b + period] whose send time is in (a, b]
        ci, ck, ct = _scheduled(fleet, cand, a, b + fleet.period[cand])
        te = event_times(fleet, ci, ck, ct, scenario)
        keep = (te > a) & (te <= b)
        idx = np.concatenate([idx, ci[keep]])
        k = np.concatenate([k, ck[keep]])
        t = np.concatenate([t, te[keep]])
    order = np.argsort(t, kind="stable")
    return idx[order], k[order], t[order]
