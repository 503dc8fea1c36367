"""The actuators' effects on readings (pure): pumps draw drains down, signal plans set speed."""

from __future__ import annotations

from datetime import datetime

import numpy as np

from device_sim import effects as fx
from device_sim.behaviour import KIND_CODE, base_values, readings

T0 = datetime.fromisoformat("2026-11-23T10:00:00+08:00").timestamp()


def _pick(fleet, kind, role=None):
    m = fleet.kind == KIND_CODE[kind]
    if role:
        m &= fleet.role == role
    return np.flatnonzero(m)


def _frame(fleet):
    drains = _pick(fleet, "water", "drain")
    zone = str(fleet.zone_id[drains[0]])
    roads = _pick(fleet, "traffic")
    seg = str(fleet.segment_id[roads[0]])
    return zone, seg, [
        {"device_id": "pmp-a", "kind": "pump", "zone_id": zone, "segment_id": None},
        {"device_id": "pmp-b", "kind": "pump", "zone_id": zone, "segment_id": None},
        {"device_id": "sig-a", "kind": "signal", "zone_id": zone, "segment_id": seg},
        {"device_id": "vms-a", "kind": "sign", "zone_id": zone, "segment_id": seg},
    ]


def _levels(fleet, world, idx, t):
    v = base_values(fleet, idx, np.ones(len(idx), np.int64), t)
    world.apply(fleet, idx, t, v)
    return v


def test_running_pumps_draw_their_zones_drains_down_then_the_runoff_refills(fleet):
    zone, _, devices = _frame(fleet)
    eff = fx.Effects(devices)
    assert sorted(eff.watched()) == ["pmp-a", "pmp-b", "sig-a"]  # signs change nothing
    drains = _pick(fleet, "water", "drain")
    mine = drains[fleet.zone_id[drains] == zone]
    other = drains[fleet.zone_id[drains] != zone][:5]
    idx = np.concatenate([mine, other])
    # flooded drains (1.5 m up), so that there is something to pump
    flood = fx.World(None, eff)

    def level(t):
        v = base_values(fleet, idx, np.ones(len(idx), np.int64), np.full(len(idx), t))
        v["level_m"] = v["level_m"] + 1.5
        before = v["level_m"].copy()
        flood.apply(fleet, idx, np.full(len(idx), t), v)
        return before, v["level_m"]

    eff.observe("pmp-a", {"running": 0.0, "flow_m3_h": 0.0}, T0)
    b, a = level(T0 + 3600)
    assert np.array_equal(a, b)  # stopped pumps change nothing
    eff.observe("pmp-a", {"running": 1.0, "flow_m3_h": 1000.0}, T0 + 3600)
    eff.observe("pmp-b", {"running": 1.0, "flow_m3_h": 1000.0}, T0 + 3600)
    rate = 2 * fx.pump_fall_m_h({"running": 1, "flow_m3_h": 1000.0})
    assert rate == 1.0  # m/h
    b, a = level(T0 + 3600 + 1800)  # half an hour of two pumps: 0.5 m lower
    n = len(mine)
    assert np.allclose(b[:n] - a[:n], 0.5, atol=1e-3)
    assert np.array_equal(a[n:], b[n:])  # other zones' drains: untouched
    b_earlier, a_earlier = level(T0 + 1800)  # before the start: as it was
    assert np.array_equal(a_earlier, b_earlier)
    eff.observe("pmp-a", {"running": 0.0, "flow_m3_h": 0.0}, T0 + 5400)
    eff.observe("pmp-b", {"running": 0.0, "flow_m3_h": 0.0}, T0 + 5400)
    b, a = level(T0 + 5400 + 900)  # refilling at REFILL_M_H for a quarter of an hour
    assert np.allclose(b[:n] - a[:n], 0.5 - fx.REFILL_M_H / 4, atol=1e-3)
    b, a = level(T0 + 5400 + 20 * 3600)  # long refilled
    assert np.array_equal(a, b)


def test_pumps_never_draw_a_drain_below_its_floor(fleet):
    zone, _, devices = _frame(fleet)
    eff = fx.Effects(devices)
    eff.observe("pmp-a", {"running": 1.0, "flow_m3_h": 2000.0}, T0)
    drains = _pick(fleet, "water", "drain")
    idx = drains[fleet.zone_id[drains] == zone]
    t = np.full(len(idx), T0 + 10 * 3600)
    v = _levels(fleet, fx.World(None, eff), idx, t)
    raw = base_values(fleet, idx, np.ones(len(idx), np.int64), t)["level_m"]
    assert (v["level_m"] >= np.minimum(raw, fx.DRAIN_FLOOR_M) - 1e-9).all()
    assert (v["level_m"] <= fx.DRAIN_FLOOR_M + 1e-9).all()


def test_a_signal_plan_changes_its_segments_speed_and_flow_after_settling(fleet):
    _, seg, devices = _frame(fleet)
    eff = fx.Effects(devices)
    roads = _pick(fleet, "traffic")
    on = roads[fleet.segment_id[roads] == seg]
    off = roads[fleet.segment_id[roads] != seg][:20]
    idx = np.concatenate([on, off])
    world = fx.World(None, eff)
    eff.observe("sig-a", {"plan": 1.0}, T0)
    assert eff.segments == {}  # plan 1: nothing changes
    eff.observe("sig-a", {"plan": 9.0}, T0 + 60)
    t = np.full(len(idx), T0 + 60 + fx.SETTLE_S)
    raw = base_values(fleet, idx, np.ones(len(idx), np.int64), t)
    v = _levels(fleet, world, idx, t)
    n = len(on)
    want = np.clip(raw["speed_kmh"][:n] * fx.PLAN_SPEED[9], 2, 140)
    assert np.allclose(v["speed_kmh"][:n], want, atol=0.06)
    assert (v["vehicle_count"][:n] <= raw["vehicle_count"][:n]).all()
    assert np.array_equal(v["speed_kmh"][n:], raw["speed_kmh"][n:])
    half = np.full(len(idx), T0 + 60 + fx.SETTLE_S / 2)  # half-way: between the two
    raw_h = base_values(fleet, idx, np.ones(len(idx), np.int64), half)
    v_h = _levels(fleet, world, idx, half)
    assert np.allclose(v_h["speed_kmh"][:n], raw_h["speed_kmh"][:n] * 0.6, atol=0.06)


def test_readings_with_effects_and_a_scenario_stack(fleet):
    """The world layer goes through ``readings`` like a scenario (and keeps every reading)."""
    zone, _, devices = _frame(fleet)
    eff = fx.Effects(devices)
    eff.observe("pmp-a", {"running": 1.0, "flow_m3_h": 2000.0}, T0)
    drains = _pick(fleet, "water", "drain")
    idx = drains[fleet.zone_id[drains] == zone]
    k = np.ones(len(idx), np.int64)
    t = np.full(len(idx), T0 + 3600)
    plain = readings(fleet, idx, k, t)
    pumped = readings(fleet, idx, k, t, scenario=fx.World(None, eff))
    assert len(pumped) == len(plain) == len(idx)
    assert (pumped.values["level_m"] < plain.values["level_m"]).all()
