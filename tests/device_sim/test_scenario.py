from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from device_sim import scenario as sc
from device_sim.behaviour import (
    KIND_CODE,
    base_values,
    due,
    inflow_alarm_level,
    readings,
)
from device_sim.run import SCENARIO_DIR, resolve_scenario

from .conftest import SEED

SHIPPED = sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))
START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def test_shipped_scenarios_validate():
    assert {"accident", "lakeside_surge", "flash_flood", "building_fire", "gas_leak",
            "gateway_outage", "city_day"} <= set(SHIPPED)
    for name in SHIPPED:
        s = sc.load(resolve_scenario(name))
        assert s.incidents


def test_bad_file_names_line_and_field(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: x\nincidents:\n  - type: gas_leak\n    at: 5q\n"
                 "  - type: fire\n    at: 1\n  - type: crowd_surge\n    at: 1m\n    factr: 3\n")
    with pytest.raises(sc.ScenarioError) as e:
        sc.load(p)
    msg = str(e.value)
    assert "bad.yaml line 4: incidents.0.gas_leak.at" in msg
    assert "line 5: incidents.1" in msg and "'fire'" in msg
    assert "line 9" in msg and "factr" in msg
    with pytest.raises(sc.ScenarioError, match="time zone"):
        sc.loads("name: x\nstart: 2026-01-01T00:00:00\n")
    with pytest.raises(sc.ScenarioError, match="not YAML"):
        sc.loads("name: [x\n")


def changed(fleet, res, t0, t1):
    """Sensor ids whose readings differ with the scenario, in (t0, t1]; also silenced ones."""
    idx, k, t = due(fleet, t0, t1)
    a = readings(fleet, idx, k, t)
    b = readings(fleet, idx, k, t, scenario=res)
    out = set(fleet.sensor_id[np.setdiff1d(a.idx, b.idx)])
    common = np.isin(a.idx, b.idx)
    keep = np.isin(b.idx, a.idx)
    for m in a.values:
        x, y = a.values[m][common], b.values[m][keep]
        diff = ~((x == y) | (np.isnan(x) & np.isnan(y)))
        out |= set(fleet.sensor_id[a.idx[common][diff]])
    return out


@pytest.mark.parametrize("name", ["accident", "lakeside_surge", "flash_flood", "building_fire",
                                  "gas_leak", "gateway_outage"])
def test_incident_changes_the_right_sensors_at_the_right_time(name, deployment, fleet, city):
    s = sc.load(resolve_scenario(name))
    res = s.resolve(deployment, start=START, city=city, seed=SEED)
    (b,) = res.incidents
    (alert,) = sc.expected_alerts(res, deployment)
    assert alert.incident_type == s.incidents[0].type and alert.entity_ids
    assert alert.start == datetime.fromtimestamp(b.start, UTC) == START + \
        __import__("datetime").timedelta(seconds=s.incidents[0].at)
    allowed = set(alert.sensor_ids)
    if b.type == "traffic_accident":  # the upstream queue too
        allowed |= set(deployment.filter(deployment["segment_id"].is_in(list(b.queue)))[
            "sensor_id"])
    # nothing changes before the start
    assert changed(fleet, res, b.start - 600, b.start) == set()
    # during: only the incident's sensors, and the core of them
    during = changed(fleet, res, b.start + b.incident.ramp, b.end)
    assert during and during <= allowed, (during - allowed)
    assert set(alert.sensor_ids) & during
    # after the end (and the fade), all is back to normal, except the slowly draining lake
    after = changed(fleet, res, b.end + b.incident.ramp + 1, b.end + b.incident.ramp + 600)
    lake = set(deployment.filter(deployment["role"] == "lake_level")["sensor_id"])
    assert after <= (lake if b.type == "flash_flood" else set())


def test_incident_effects_have_the_right_sign(deployment, fleet, city):
    res = sc.load(resolve_scenario("city_day")).resolve(deployment, start=START, city=city,
                                                        seed=SEED)
    by = {b.type: b for b in res.incidents}
    assert len(by) == 6

    def vals(b, metric, ids, scenario):
        idx, k, t = due(fleet, b.start + b.incident.ramp, b.end)
        r = readings(fleet, idx, k, t, scenario=scenario)
        m = np.isin(fleet.sensor_id[r.idx], list(ids))
        v = r.values[metric][m]
        return v[~np.isnan(v)]

    acc = by["traffic_accident"]
    ids = sc.expected_alerts(sc.Resolved(res.scenario, (acc,), res.start), deployment)[0]
    assert vals(acc, "speed_kmh", ids.sensor_ids, res).max() <= 12
    fire = by["building_fire"]
    assert vals(fire, "alarm", fire.sensors, res).min() == 1
    assert vals(fire, "smoke_pct", fire.sensors, res).min() > 20
    gas = by["gas_leak"]
    assert vals(gas, "ch4_lel_pct", gas.sensors, res).max() > 30
    flood = by["flash_flood"]
    drains = set(deployment.filter(deployment["role"] == "drain")["sensor_id"]) & flood.sensors
    assert vals(flood, "level_m", drains, res).mean() > \
        vals(flood, "level_m", drains, None).mean() + 1
    crowd = by["crowd_surge"]
    ppl = set(deployment.filter(deployment["zone_id"].is_in(list(crowd.zones)) &
                                (deployment["kind"] == "people"))["sensor_id"])
    assert vals(crowd, "people_count", ppl, res).sum() > \
        4 * vals(crowd, "people_count", ppl, None).sum()
    out = by["gateway_outage"]
    assert len(vals(out, "battery_pct", out.sensors, res)) == 0
    assert len(vals(out, "battery_pct", out.sensors, None)) > 0


def test_repeating_scenario_recurs_every_cycle(deployment, fleet, city):
    s = sc.load(resolve_scenario("city_day"))
    assert s.repeat == 3600
    res = s.resolve(deployment, start=START, city=city, seed=SEED)
    fire = next(b for b in res.incidents if b.type == "building_fire")
    mid = (fire.start + fire.end) / 2
    assert fire.intensity(fire.fold(np.array([mid, mid + 3600, mid + 7 * 3600]))).min() == 1
    assert fire.intensity(fire.fold(np.array([fire.start - 10]))).max() == 0
    later = changed(fleet, res, mid + 3 * 3600, mid + 3 * 3600 + 120)
    assert later and later <= fire.sensors | {
        sid for b in res.incidents for sid in b.sensors | b.zones | b.segments | b.queue} | set(
        deployment.filter(deployment["segment_id"].is_in(
            [x for b in res.incidents for x in b.segments | b.queue]) |
            deployment["zone_id"].is_in([z for b in res.incidents for z in b.zones]))["sensor_id"])
    alerts = sc.expected_alerts(res, deployment,
                                until=START + __import__("datetime").timedelta(hours=3))
    fires = [a for a in alerts if a.incident_type == "building_fire"]
    assert [(a.start - fires[0].start).total_seconds() for a in fires] == [0, 3600, 7200]


@pytest.mark.parametrize(("name", "metric", "level"), [("building_fire", "alarm", 1),
                                                       ("gas_leak", "ch4_lel_pct", 20),
                                                       ("flash_flood", "rain_mm_h", 30)])
def test_detectors_report_an_alarm_at_once_not_on_schedule(name, metric, level, deployment,
                                                            fleet, city):
    res = sc.load(resolve_scenario(name)).resolve(deployment, start=START, city=city,
                                                   seed=SEED)
    (b,) = res.incidents
    # windows of 1 s, as a running simulator sends them: each reading exactly once
    sent = [due(fleet, b.start - 60 + i, b.start - 59 + i, res) for i in range(120)]
    idx = np.concatenate([x[0] for x in sent])
    k = np.concatenate([x[1] for x in sent])
    t = np.concatenate([x[2] for x in sent])
    assert len(set(zip(idx.tolist(), k.tolist(), strict=True))) == len(idx)
    whole = due(fleet, b.start - 60, b.start + 60, res)
    assert sorted(zip(idx.tolist(), k.tolist(), strict=True)) == sorted(
        zip(whole[0].tolist(), whole[1].tolist(), strict=True))
    r = readings(fleet, idx, k, t, scenario=res)
    alarm = r.values[metric] >= level
    assert alarm.any()
    first = r.ts_ms[alarm].min() / 1000 - b.start
    # the detectors' schedule is 15 s (gauges 30 s); the alarm reading goes out within
    # seconds of the start
    assert 0 < first < 5
    assert not (r.values[metric][r.ts_ms / 1000 < b.start] >= level).any()


def test_cloudburst_rain_arrives_at_once_drains_fill_over_the_ramp(deployment, fleet, city):
    res = sc.load(resolve_scenario("flash_flood")).resolve(deployment, start=START, city=city,
                                                           seed=SEED)
    (b,) = res.incidents
    pos = np.flatnonzero(np.isin(fleet.sensor_id, list(b.sensors)))
    rain = pos[fleet.role[pos] == "rain"]
    drain = pos[fleet.role[pos] == "drain"]
    assert len(rain) and len(drain)

    def level(p, metric, dt):
        k = np.full(len(p), 7, np.int64)  # same noise draw at every time: only t differs
        v = base_values(fleet, p, k, np.full(len(p), b.start + dt))
        res.apply(fleet, p, np.full(len(p), b.start + dt), v)
        return v[metric]

    # the storm cell's leading edge: heavy rain (> 30 mm/h) within 3 s, full within 20 s
    assert (level(rain, "rain_mm_h", -1) < 5).all()
    assert (level(rain, "rain_mm_h", 3) > 30).all()
    assert (level(rain, "rain_mm_h", 20) >= 0.95 * b.incident.rain_mm_h).all()
    # the runoff fills the drains over the ramp, not at the onset
    d0, d_half = level(drain, "level_m", -1), level(drain, "level_m", b.incident.ramp / 2)
    assert (level(drain, "level_m", 5) - d0 < 0.05).all()
    assert np.allclose(d_half - d0, b.incident.drain_rise_m / 2, atol=0.02)
    # drains crossing their high level report at the crossing, not at the next 30 s slot
    assert set(drain) <= set(res.alarm_candidates(fleet))
    t0 = b.start + 60  # below the high level: 0.3 m + at most 1.6 m x 60 / 300
    sent = [due(fleet, t0 + i, t0 + i + 1, res) for i in range(int(b.incident.ramp) - 60)]
    idx = np.concatenate([x[0] for x in sent])
    r = readings(fleet, idx, np.concatenate([x[1] for x in sent]),
                 np.concatenate([x[2] for x in sent]), scenario=res)
    crossed = 0
    for i in drain:
        mine = r.idx == i
        lv, ts = r.values["level_m"][mine], r.ts_ms[mine]
        high = lv >= 1.0
        if not high.any():
            continue
        crossed += 1
        # the first report at the high level went out at the crossing (+0.1 s), not up to
        # 30 s later: the level is just over 1.0 m (it rises 0.0053 m/s)
        assert lv[np.argmin(np.where(high, ts, np.inf))] < 1.01, (i, lv, ts)
    assert crossed >= len(drain) // 2


def test_accident_speed_collapses_within_seconds(deployment, fleet, city):
    res = sc.load(resolve_scenario("accident")).resolve(deployment, start=START, city=city,
                                                        seed=SEED)
    (b,) = res.incidents
    idx, k, t = due(fleet, b.start, b.start + 10, res)
    r = readings(fleet, idx, k, t, scenario=res)
    on = np.isin(fleet.segment_id[r.idx], list(b.segments))
    assert on.any()
    # every sensor on the segment sends a collapsed speed within 5 s (not at its 10 s slot)
    low = on & (r.values["speed_kmh"] <= 0.25 * fleet.free_flow[r.idx]) & (
        r.ts_ms / 1000 - b.start < 5)
    assert set(r.idx[low]) == set(r.idx[on])


def _surge_counters(res, fleet, role="zone"):
    (b,) = res.incidents
    return b, np.flatnonzero((fleet.kind == KIND_CODE["people"]) & (fleet.role == role)
                             & np.isin(fleet.zone_id, list(b.zones)))


def test_surge_inflow_steps_up_at_the_onset_while_the_count_ramps(deployment, fleet, city):
    res = sc.load(resolve_scenario("lakeside_surge")).resolve(deployment, start=START,
                                                              city=city, seed=SEED)
    b, pos = _surge_counters(res, fleet)
    assert len(pos) >= 2
    k = np.full(len(pos), 40, np.int64)  # same noise draw at every time: only t differs

    def at(dt):
        v = base_values(fleet, pos, k, np.full(len(pos), b.start + dt))
        res.apply(fleet, pos, np.full(len(pos), b.start + dt), v)
        return v["people_count"].sum(), v["entries"].sum()

    count0, in0 = at(-1)
    count1, in1 = at(20)  # 20 s into the 3 min ramp (past one 15 s reporting interval)
    count2, in2 = at(170)  # near its end
    count3, in3 = at(b.incident.ramp + 60)  # full, no longer growing
    ramp, per = b.incident.ramp, fleet.period[pos].mean()
    # the count ramps: 1 + 7 x 20/180 = 1.8x, then 1 + 7 x 170/180 = 7.6x
    assert 1.6 * count0 < count1 < 2.0 * count0 and count2 > 7 * count0
    # the inflow steps up at once and stays up while the count grows: the arrivals in an
    # interval are base count x (factor - 1) x per / ramp, 35x the normal inflow here
    arrivals = count0 * (b.incident.factor - 1) * per / ramp
    assert in1 > 10 * in0 and in1 == pytest.approx(in0 + arrivals, rel=0.05)
    assert in2 == pytest.approx(in1, rel=0.05)
    # once the zone is full, people come and go as usual
    assert in3 < 2 * in0


def test_surge_counters_report_the_inflow_at_once_not_on_schedule(deployment, fleet, city):
    # the scenario's own start: a holiday evening, the lakeside full (profile ~1.1): the
    # arrivals cross the alarm share in share / (profile x (factor - 1) / ramp) ~ 2.3 s
    res = sc.load(resolve_scenario("lakeside_surge")).resolve(deployment, city=city,
                                                              seed=SEED)
    b, pos = _surge_counters(res, fleet)
    assert set(pos) <= set(res.alarm_candidates(fleet))
    # windows of 1 s, as a running simulator sends them
    sent = [due(fleet, b.start - 30 + i, b.start - 29 + i, res) for i in range(60)]
    idx = np.concatenate([x[0] for x in sent])
    k = np.concatenate([x[1] for x in sent])
    t = np.concatenate([x[2] for x in sent])
    r = readings(fleet, idx, k, t, scenario=res)
    on = np.isin(r.idx, pos)
    alarm = on & (r.values["entries"] >= inflow_alarm_level(fleet, r.idx))
    ts = r.ts_ms / 1000 - b.start
    assert not alarm[ts < 0].any()
    # every zone counter of the surge zone sends its inflow alarm within 3 s of the onset
    # (their schedule is 15 s), while the count has risen just ~10%
    first = {i: ts[alarm & (r.idx == i)].min() for i in pos}
    assert all(0 < x < 3 for x in first.values()), first
    assert r.values["entries"][alarm & (ts < 3)].min() >= 100  # analytics' min_value
