"""What each simulated sensor reads and when: the public face of the behaviour model.

In: a :class:`Fleet` (the deployment's sensors as numpy arrays, plus truck routes on the
road graph), the readings due (sensor positions, occurrence numbers ``k``, times), an optional
scenario (anything with ``apply(fleet, idx, t, values) -> silenced mask``) and a
:class:`Faults` configuration.  Out: a frozen :class:`Batch` of readings (sensor positions,
``seq``, ``ts_ms``, metric columns with NaN where a sensor does not report a metric, and a
``bad`` code per reading for deliberately broken messages).

The model is split by concern: :mod:`device_sim.calendar` (city time, day kinds, demand
profiles), :mod:`device_sim.fleet` (the deployment as arrays), :mod:`device_sim.schedule`
(when readings are sent, event reports), :mod:`device_sim.values` (what sensors read),
:mod:`device_sim.alarms` (alarm states) and :mod:`device_sim.faults` (device faults), with
:mod:`device_sim.rng` (counter-based randomness: same seed, same readings, in any process).
Values stay inside the catalogue's ranges except readings with a non-zero ``bad`` code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from citypulse.catalogue import KINDS
from device_sim.alarms import (
    DRAIN_ALARM_LEVEL_M,
    FIRE_ALARM_SMOKE_PCT,
    GAS_ALARM_CH4_LEL_PCT,
    GAS_ALARM_CO_PPM,
    INFLOW_ALARM_MIN,
    INFLOW_ALARM_SHARE,
    RAIN_ALARM_MM_H,
    TRAFFIC_ALARM_SPEED_SHARE,
    alarm_state,
    inflow_alarm_level,
)
from device_sim.calendar import (
    HOLIDAYS,
    TZ_OFFSET_S,
    crowd_profile,
    day_kind,
    local_hour,
    rain_background,
    traffic_profile,
)
from device_sim.faults import (
    BAD_JSON,
    BAD_METRIC,
    BAD_NONE,
    BAD_RANGE,
    BAD_VALUE,
    Faults,
    on_the_wire,
    stuck,
)
from device_sim.fleet import KIND_CODE, KIND_NAMES, Fleet
from device_sim.rng import normal, uniform
from device_sim.schedule import due, event_times
from device_sim.values import HEALTH_EVERY, METRICS, base_values, crowd_capacity

__all__ = [
    "BAD_JSON", "BAD_METRIC", "BAD_NONE", "BAD_RANGE", "BAD_VALUE", "DRAIN_ALARM_LEVEL_M",
    "FIRE_ALARM_SMOKE_PCT", "GAS_ALARM_CH4_LEL_PCT", "GAS_ALARM_CO_PPM", "HEALTH_EVERY",
    "HOLIDAYS", "INFLOW_ALARM_MIN", "INFLOW_ALARM_SHARE", "KIND_CODE", "KIND_NAMES", "METRICS",
    "RAIN_ALARM_MM_H", "TRAFFIC_ALARM_SPEED_SHARE", "TZ_OFFSET_S", "Batch", "Faults", "Fleet",
    "alarm_state", "base_values", "check_ranges", "crowd_capacity", "crowd_profile",
    "day_kind", "due", "event_times", "inflow_alarm_level", "local_hour", "normal",
    "rain_background", "readings", "traffic_profile", "uniform",
]


@dataclass(frozen=True)
class Batch:
    """Readings: sensor positions in the fleet, seq, ts (ms), metric columns, bad codes."""

    idx: np.ndarray
    seq: np.ndarray
    ts_ms: np.ndarray
    values: dict[str, np.ndarray]
    bad: np.ndarray

    def __len__(self) -> int:
        return len(self.idx)



def readings(fleet: Fleet, idx: np.ndarray, k: np.ndarray, t: np.ndarray,
             scenario: Any = None, faults: Faults | None = None) -> Batch:
    """The readings due at (idx, k, t) with the scenario's incidents and device faults."""
    faults = faults or Faults()
    t_eval, k_eval = stuck(faults, fleet.seed, idx, k, t)
    values = base_values(fleet, idx, k_eval, t_eval)
    keep = np.ones(len(idx), bool)
    if scenario is not None:
        keep &= ~scenario.apply(fleet, idx, t, values)
    keep, ts, bad = on_the_wire(faults, fleet.seed, idx, k, t, values, keep)
    sel = np.flatnonzero(keep)
    return Batch(idx[sel], k[sel], np.round(ts[sel] * 1000).astype(np.int64),
                 {m: v[sel] for m, v in values.items()}, bad[sel])


def check_ranges(fleet: Fleet, batch: Batch) -> list[str]:
    """Metric values outside the catalogue's ranges, ignoring deliberately bad readings."""
    problems = []
    good = batch.bad == 0
    kinds = fleet.kind[batch.idx]
    for code, name in enumerate(KIND_NAMES):
        rows = good & (kinds == code)
        for m in KINDS[name].metrics:
            v = batch.values[m.name][rows]
            v = v[~np.isnan(v)]
            if len(v) and (v.min() < m.min or v.max() > m.max):
                problems.append(f"{name}.{m.name}: {v.min()}..{v.max()} not in {m.min}..{m.max}")
    # metrics reported by a kind that does not have them
    for code, name in enumerate(KIND_NAMES):
        rows = kinds == code
        for m in METRICS:
            if KINDS[name].metric(m) is None and (~np.isnan(batch.values[m][rows])).any():
                problems.append(f"{name} reports foreign metric {m}")
    return problems
