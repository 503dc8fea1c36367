from __future__ import annotations

from datetime import datetime

import numpy as np
import shapely

from device_sim.behaviour import (
    BAD_NONE,
    KIND_CODE,
    Faults,
    alarm_state,
    base_values,
    check_ranges,
    due,
    inflow_alarm_level,
    readings,
)


def at(s: str) -> float:
    return datetime.fromisoformat(s).timestamp()


MON = "2026-11-23T{}:00:00+08:00"  # a Monday
SAT = "2026-11-28T{}:00:00+08:00"


def window(fleet, t0, seconds=120, **kw):
    idx, k, t = due(fleet, t0, t0 + seconds)
    return readings(fleet, idx, k, t, **kw)


def mean(fleet, b, kind, metric, role=None):
    m = fleet.kind[b.idx] == KIND_CODE[kind]
    if role:
        m &= fleet.role[b.idx] == role
    return float(np.nanmean(b.values[metric][m]))


def test_schedule_each_sensor_on_its_interval(fleet):
    t0 = at(MON.format("10"))
    idx, k, t = due(fleet, t0, t0 + 600)
    assert np.all((t > t0) & (t <= t0 + 600)) and np.all(np.diff(t) >= 0)
    counts = np.bincount(idx, minlength=len(fleet))
    expected = 600 / fleet.period
    assert np.all(np.abs(counts - expected) <= 1)
    # windows split anywhere give the same readings
    a = due(fleet, t0, t0 + 250)
    b = due(fleet, t0 + 250, t0 + 600)
    assert len(a[0]) + len(b[0]) == len(idx)


def test_same_seed_same_readings(fleet):
    t0 = at(MON.format("08"))
    a = window(fleet, t0, faults=Faults.default())
    b = window(fleet, t0, faults=Faults.default())
    assert np.array_equal(a.ts_ms, b.ts_ms) and np.array_equal(a.seq, b.seq)
    for m in a.values:
        assert np.array_equal(a.values[m], b.values[m], equal_nan=True)


def test_values_within_catalogue_ranges_all_day(fleet):
    for h in range(0, 24, 3):
        b = window(fleet, at(MON.format(f"{h:02d}")), 60)
        assert check_ranges(fleet, b) == []
        b = window(fleet, at(SAT.format(f"{h:02d}")), 60)
        assert check_ranges(fleet, b) == []


def test_traffic_peaks_and_weekend_shape(fleet):
    peak = window(fleet, at(MON.format("08")), 600)
    night = window(fleet, at(MON.format("03")), 600)
    evening = window(fleet, at(MON.format("18")), 600)
    sat_am = window(fleet, at(SAT.format("08")), 600)
    flow = {n: mean(fleet, b, "traffic", "vehicle_count") for n, b in
            (("peak", peak), ("night", night), ("evening", evening), ("sat", sat_am))}
    assert flow["peak"] > 3 * flow["night"] and flow["evening"] > 3 * flow["night"]
    assert flow["sat"] < 0.7 * flow["peak"]
    assert mean(fleet, peak, "traffic", "speed_kmh") < mean(fleet, night, "traffic", "speed_kmh")
    assert mean(fleet, peak, "traffic", "occupancy_pct") > \
        2 * mean(fleet, night, "traffic", "occupancy_pct")
    # speed falls as flow nears capacity: compare saturated and light sensors at the peak
    tr = fleet.kind[peak.idx] == KIND_CODE["traffic"]
    i = peak.idx[tr]
    util = peak.values["vehicle_count"][tr] / (fleet.capacity[i] * fleet.period[i] / 3600)
    ratio = peak.values["speed_kmh"][tr] / fleet.free_flow[i]
    assert np.corrcoef(util, ratio)[0, 1] < -0.2
    # air quality and noise follow traffic
    assert mean(fleet, peak, "air", "no2_ugm3") > 1.5 * mean(fleet, night, "air", "no2_ugm3")
    assert mean(fleet, peak, "noise", "laeq_db") > mean(fleet, night, "noise", "laeq_db") + 5


def test_lakeside_crowds_evenings_and_holidays(fleet):
    def lakeside(b):
        m = (fleet.kind[b.idx] == KIND_CODE["people"]) & \
            (fleet.zone_type[b.idx] == "lakeside") & (fleet.role[b.idx] == "zone")
        return float(np.mean(b.values["people_count"][m]))
    morning = lakeside(window(fleet, at(MON.format("10")), 300))
    evening = lakeside(window(fleet, at(MON.format("20")), 300))
    holiday = lakeside(window(fleet, at("2026-10-01T20:00:00+08:00"), 300))
    assert evening > 3 * morning
    assert holiday > 1.3 * evening


def test_trucks_drive_the_road_graph(fleet, city):
    lg = np.flatnonzero(fleet.kind == KIND_CODE["logistics"])
    road = shapely.union_all(city.segments.geometry.values).buffer(3e-4)  # ~30 m
    t0 = at(MON.format("10"))
    moving = 0
    for step in range(0, 3600, 600):
        t = np.full(len(lg), t0 + step)
        v = base_values(fleet, lg, np.zeros(len(lg), np.int64), t)
        on = v["speed_kmh"] > 0
        moving += on.sum()
        pts = shapely.points(v["lon"][on], v["lat"][on])
        assert shapely.contains(road, pts).mean() > 0.97
        assert np.all(v["load_kg"] >= 0) and np.all(v["heading_deg"] <= 360)
    assert moving > len(lg) // 4
    # a truck moves along its route between readings
    a = base_values(fleet, lg, np.zeros(len(lg), np.int64), np.full(len(lg), t0))
    b = base_values(fleet, lg, np.zeros(len(lg), np.int64), np.full(len(lg), t0 + 60))
    moved = np.hypot(a["lon"] - b["lon"], a["lat"] - b["lat"]) > 1e-4
    assert moved[(a["speed_kmh"] > 0) & (b["speed_kmh"] > 0)].mean() > 0.9


def test_device_faults(fleet):
    t0 = at(MON.format("12"))
    idx, k, t = due(fleet, t0, t0 + 600)
    clean = readings(fleet, idx, k, t)
    assert len(clean) == len(idx) and (clean.bad == BAD_NONE).all()
    assert np.array_equal(clean.ts_ms, np.round(t * 1000).astype(np.int64))
    drop = readings(fleet, idx, k, t, faults=Faults(dropout=0.2))
    assert 0.7 < len(drop) / len(idx) < 0.9
    bad = readings(fleet, idx, k, t, faults=Faults(bad=0.05))
    assert 0.03 < (bad.bad > 0).mean() < 0.07
    drift = readings(fleet, idx, k, t, faults=Faults(drift=1.0, drift_ppm=500))
    assert (drift.ts_ms != clean.ts_ms).mean() > 0.9
    assert np.abs(drift.ts_ms - clean.ts_ms).max() <= 500e-6 * 30 * 86400 * 1000 + 1
    stuck = readings(fleet, idx, k, t, faults=Faults(stuck=1.0))
    tr = fleet.kind[stuck.idx] == KIND_CODE["traffic"]
    first = {}
    for i, v in zip(stuck.idx[tr], stuck.values["speed_kmh"][tr], strict=True):
        assert first.setdefault(i, v) == v  # the same value every time
    dead = readings(fleet, idx, k, np.full(len(t), at(MON.format("22"))),
                    faults=Faults(battery=1.0))
    assert len(dead) < 0.1 * len(idx)  # weak batteries died during the day


def test_no_inflow_alarm_on_a_normal_holiday_evening(fleet):
    ppl = fleet.subset(np.flatnonzero(fleet.kind == KIND_CODE["people"]))
    # the National Day evening at the lakeside, its busiest time of the year, plus midnight
    # (the holiday's step in the day profile is no crowd walking in)
    for t0, seconds in ((at("2026-10-01T17:00:00+08:00"), 5 * 3600),
                        (at("2026-09-30T23:50:00+08:00"), 1200)):
        b = window(ppl, t0, seconds)
        lake = np.char.find(ppl.zone_type[b.idx], "lakeside") >= 0
        assert lake.sum() > 1000
        assert not alarm_state(ppl, b.idx, b.values).any()
        ratio = b.values["entries"] / inflow_alarm_level(ppl, b.idx)
        zone = ppl.role[b.idx] == "zone"
        # zone counters stay well below their alarm level, and gates' small counts too
        assert ratio[zone].max() < 0.8
        assert ratio.max() < 0.8
    # while a counter whose entries reach the share is in alarm
    i = np.flatnonzero(ppl.role == "zone")[:1]
    v = base_values(ppl, i, np.zeros(1, np.int64), np.array([t0]))
    assert not alarm_state(ppl, i, v).any()
    v["entries"] = inflow_alarm_level(ppl, i)
    assert alarm_state(ppl, i, v).all()


def test_water_alarms_trip_on_a_cloudburst_only(fleet):
    wtr = fleet.subset(np.flatnonzero(fleet.kind == KIND_CODE["water"]))
    # two days of background weather (showers included): no gauge or drain in alarm
    b = window(wtr, at(MON.format("00")), 2 * 86400)
    assert len(b) > 1000 and np.nanmax(b.values["rain_mm_h"]) > 0
    assert not alarm_state(wtr, b.idx, b.values).any()
    by_role = {r: np.flatnonzero(wtr.role == r)[:1] for r in ("rain", "drain", "lake_level")}
    assert all(len(x) for x in by_role.values())
    t = np.array([at(MON.format("12"))])
    for role, i in by_role.items():
        v = base_values(wtr, i, np.zeros(1, np.int64), t)
        assert not alarm_state(wtr, i, v).any()
        metric = "rain_mm_h" if role == "rain" else "level_m"
        v[metric] = np.array([30.0 if role == "rain" else 1.0])
        # a gauge's heavy rain and a drain's high level alarm; the lake's 1 m is low water
        assert alarm_state(wtr, i, v).all() == (role != "lake_level"), role
