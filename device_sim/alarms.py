"""Alarm states of alarm-capable sensors (fire, gas, traffic radar, people counter, water).

Crossing into one sends the next reading at once (event-driven reporting, see
:mod:`device_sim.schedule`) instead of at its scheduled time.
"""

from __future__ import annotations

import numpy as np

from device_sim.fleet import KIND_CODE, Fleet
from device_sim.values import crowd_capacity

FIRE_ALARM_SMOKE_PCT = 3.0  # photoelectric detector alarm level (%/m obscuration)
GAS_ALARM_CH4_LEL_PCT = 20.0  # gas detector level-1 alarm (% LEL) ...
GAS_ALARM_CO_PPM = 100.0  # ... or CO
TRAFFIC_ALARM_SPEED_SHARE = 0.25  # incident-detecting radar: speed below this share of free flow
# People counter inflow alarm: entries in one reporting interval reaching this share of the
# counter's crowd capacity, and at least INFLOW_ALARM_MIN persons.  A normal day's entries
# are about cap * profile * per / 1800 (profile <= ~2: <= 1.7% of cap per 15 s; the busiest
# zone counters reach ~3%; gates, cap 150, ~6% = 9 persons by chance), so it never trips on
# a normal day, while a surge's extra arrivals (cap * profile * (factor - 1) / ramp a
# second) cross it within seconds (lakeside, 8x over 3 min: ~1 s on a holiday evening,
# ~2 s on a working-day evening).  The alarm only makes the counter report at once; the
# alert is analytics' crowd_surge rule.
INFLOW_ALARM_SHARE = 0.05
INFLOW_ALARM_MIN = 20.0
# Water: a rain gauge's heavy-rain alarm (intensity, as event-reporting ALERT-style gauges
# send at once) and a drain monitor's high-level alarm (m above invert).  Background showers
# stay under ~4 mm/h and drains under ~0.3 m, so neither trips without an incident.
RAIN_ALARM_MM_H = 30.0
DRAIN_ALARM_LEVEL_M = 1.0


def inflow_alarm_level(fleet: Fleet, idx: np.ndarray) -> np.ndarray:
    """Entries in one interval at which a people counter's inflow alarm trips (persons)."""
    return np.maximum(INFLOW_ALARM_SHARE * crowd_capacity(fleet, idx), INFLOW_ALARM_MIN)


def alarm_state(fleet: Fleet, idx: np.ndarray, values: dict[str, np.ndarray]) -> np.ndarray:
    """Whether each reading is in an alarm state.

    Fire alarm, gas level, traffic collapse, a people counter's inflow alarm (entries in
    the interval at least ``INFLOW_ALARM_SHARE`` of its crowd capacity and at least
    ``INFLOW_ALARM_MIN``), a rain gauge's heavy-rain alarm or a drain's high-level alarm.
    """
    kind = fleet.kind[idx]
    with np.errstate(invalid="ignore"):
        fire = (kind == KIND_CODE["fire"]) & (values["alarm"] >= 1)
        gas = (kind == KIND_CODE["gas"]) & ((values["ch4_lel_pct"] >= GAS_ALARM_CH4_LEL_PCT)
                                            | (values["co_ppm"] >= GAS_ALARM_CO_PPM))
        traffic = (kind == KIND_CODE["traffic"]) & (
            values["speed_kmh"] < TRAFFIC_ALARM_SPEED_SHARE * fleet.free_flow[idx])
        people = (kind == KIND_CODE["people"]) & (
            values["entries"] >= inflow_alarm_level(fleet, idx))
        water = (kind == KIND_CODE["water"]) & (
            (values["rain_mm_h"] >= RAIN_ALARM_MM_H)
            | ((fleet.role[idx] == "drain") & (values["level_m"] >= DRAIN_ALARM_LEVEL_M)))
    return fire | gas | traffic | people | water
