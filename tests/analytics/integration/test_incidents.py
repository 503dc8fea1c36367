"""Each incident type raises exactly the expected alert at the right place (real PostgreSQL)."""

from __future__ import annotations

from analytics import lifecycle
from analytics.engine import Engine
from analytics.rules import load_rules, parse_rules


def _alerts(db):
    return lifecycle.list_alerts(db, open_only=False)


def _engine(db, city_model, rules=None):
    return Engine(db, rules or load_rules(), city=city_model)


def test_fire_alarm_opens_one_critical_alert_at_the_detector(db, feed, city_model):
    feed.sensor("fir-1", "fire", 121.95, 30.91, zone_id="Z2-01", role="detector")
    feed.sensor("fir-2", "fire", 121.96, 30.91, zone_id="Z2-02", role="detector")
    eng = _engine(db, city_model)
    feed.write(0, {"fir-1": {"smoke_pct": 0.1, "temperature_c": 21, "alarm": 0},
                   "fir-2": {"smoke_pct": 0.1, "temperature_c": 21, "alarm": 0}})
    eng.tick(feed.at(1))
    assert _alerts(db) == []
    feed.write(2, {"fir-1": {"smoke_pct": 12, "temperature_c": 70, "alarm": 1}})
    eng.tick(feed.at(3))
    eng.tick(feed.at(4))
    alerts = _alerts(db)
    assert [(a.rule, a.entity_kind, a.entity_id, a.severity, a.zone_id) for a in alerts] == [
        ("fire", "sensor", "fir-1", "critical", "Z2-01")]
    assert alerts[0].evidence["alarm"] == 1
    assert alerts[0].started_at == feed.at(2)


def test_gas_leak_on_co_only(db, feed, city_model):
    feed.sensor("gas-1", "gas", zone_id="Z3-04")
    feed.sensor("gas-2", "gas", zone_id="Z3-05")
    eng = _engine(db, city_model)
    feed.write(0, {"gas-1": {"ch4_lel_pct": 1, "co_ppm": 150}, "gas-2": {"ch4_lel_pct": 15,
                                                                        "co_ppm": 5}})
    eng.tick(feed.at(1))
    # one alert per leak (zone), the detectors that alarm as its scope
    assert [(a.rule, a.entity_kind, a.entity_id, a.scope) for a in _alerts(db)] == [
        ("gas_leak", "zone", "Z3-04", ["gas-1"])]


def test_gas_leak_gives_one_alert_per_zone_with_its_detectors(db, feed, city_model):
    for i in range(3):
        feed.sensor(f"gas-{i}", "gas", zone_id="Z3-04")
    feed.sensor("gas-9", "gas", zone_id="Z3-05")
    eng = _engine(db, city_model)
    leak = {"ch4_lel_pct": 35, "co_ppm": 5}
    feed.write(0, {"gas-0": leak, "gas-1": leak, "gas-2": {"ch4_lel_pct": 1, "co_ppm": 1},
                   "gas-9": {"ch4_lel_pct": 1, "co_ppm": 1}})
    eng.tick(feed.at(1))
    feed.write(2, {"gas-2": leak})
    eng.tick(feed.at(3))
    alerts = _alerts(db)
    assert [(a.rule, a.entity_kind, a.entity_id) for a in alerts] == [
        ("gas_leak", "zone", "Z3-04")]
    assert alerts[0].started_at == feed.at(0)


def test_flood_needs_rain_and_drain_level_in_the_same_zone(db, feed, city_model):
    feed.sensor("rain-a", "water", zone_id="Z2-03", role="rain")
    feed.sensor("drain-a", "water", zone_id="Z2-03", role="drain")
    feed.sensor("rain-b", "water", zone_id="Z2-04", role="rain")
    feed.sensor("drain-b", "water", zone_id="Z2-04", role="drain")
    eng = _engine(db, city_model)
    feed.write(0, {"rain-a": {"rain_mm_h": 45}, "drain-a": {"level_m": 1.9},
                   "rain-b": {"rain_mm_h": 45}, "drain-b": {"level_m": 0.3}})
    eng.tick(feed.at(1))
    flood = [a for a in _alerts(db) if a.rule == "flood_risk"]
    assert [(a.entity_kind, a.entity_id, a.zone_id) for a in flood] == [("zone", "Z2-03",
                                                                         "Z2-03")]
    assert flood[0].scope == ["drain-a"]
    assert flood[0].geometry["type"] == "Polygon"


def test_crowd_density_above_zone_limit(db, feed, city_model):
    zone = next(z for z, v in city_model.zones.items() if v["zone_type"] == "plaza")
    feed.sensor("ppl-1", "people", zone_id=zone, role="zone")              # covers 10,000 m2
    feed.sensor("ppl-2", "people", zone_id=zone, role="zone", area_m2=2000.0)
    feed.sensor("ppl-gate", "people", zone_id=zone, role="gate")          # not counted
    eng = _engine(db, city_model)
    feed.write(0, {"ppl-1": {"people_count": 5000}, "ppl-2": {"people_count": 1000},
                   "ppl-gate": {"people_count": 90000}})
    eng.tick(feed.at(1))
    assert _alerts(db) == []
    # (25,000/10,000 + 4,000/2,000) / 2 = 2.25 persons/m2 > plaza limit 1.5, held 10 s (for_s)
    for s in range(2, 16, 2):
        feed.write(s, {"ppl-1": {"people_count": 25000}, "ppl-2": {"people_count": 4000}})
        eng.tick(feed.at(s + 0.5))
    # the count alone jumping (no inflow reported) is no crowd_surge (that rule is on the
    # inflow); density is critical
    assert {(a.entity_kind, a.entity_id) for a in _alerts(db)} == {("zone", zone)}
    alerts = [a for a in _alerts(db) if a.rule != "crowd_surge"]
    assert [(a.rule, a.entity_kind, a.entity_id) for a in alerts] == [
        ("crowd_density", "zone", zone)]
    assert alerts[0].evidence["limit"] == 1500
    assert alerts[0].evidence["density_per_1000m2"] == 2250
    assert alerts[0].zone_id == zone


def test_congestion_alert_on_queue_head_with_upstream_extent(db, feed, city_model):
    # a chain of three consecutive segments: up2 -> up1 -> head
    head = next(s for s in sorted(city_model.segments) if city_model.pred[s]
                and city_model.succ[s] and city_model.pred[city_model.pred[s][0]])
    up1 = city_model.pred[head][0]
    up2 = city_model.pred[up1][0]
    down = city_model.succ[head][0]
    for sid in (head, up1, up2, down):
        feed.sensor("trf-" + sid, "traffic", segment_id=sid)
    eng = _engine(db, city_model)
    ff = city_model.segments[head]["free_flow_kmh"]

    def traffic(s, slow):
        feed.write(s, {"trf-" + sid: {"speed_kmh": ff * 0.15 if sid in slow else ff * 0.9,
                                      "occupancy_pct": 60 if sid in slow else 10,
                                      "vehicle_count": 8} for sid in (head, up1, up2, down)})

    for s in range(0, 30, 5):
        traffic(s, {head, up1, up2})
        eng.tick(feed.at(s + 1))
    alerts = _alerts(db)
    assert [(a.rule, a.entity_kind, a.entity_id) for a in alerts] == [
        ("congestion", "segment", head)]
    a = alerts[0]
    assert sorted(a.scope) == sorted([head, up1, up2])
    assert a.evidence["queue_segments"] == 3
    assert a.geometry["type"] == "LineString"
    # the queue dissolves: auto-resolved only after clear_for_s (120 s) below the clear level
    for s in range(30, 200, 10):
        traffic(s, set())
        eng.tick(feed.at(s + 1))
        if s < 140:
            assert lifecycle.get_alert(db, a.id).status == "open"
    assert lifecycle.get_alert(db, a.id).status == "resolved"


def test_threshold_with_duration_and_rate_of_change(db, feed, city_model):
    feed.sensor("lake-1", "water", zone_id="Z-LAKE", role="lake_level")
    eng = _engine(db, city_model)
    for s in range(0, 130, 10):
        feed.write(s, {"lake-1": {"level_m": 3.2}})
        eng.tick(feed.at(s + 1))
        opened = [a.rule for a in _alerts(db)]
        if s + 1 < 120:
            assert "water_level_high" not in opened
    assert "water_level_high" in [a.rule for a in _alerts(db)]


def test_oscillating_values_do_not_flap(db, feed, city_model):
    rules = parse_rules("""
rules:
  - {id: hot, type: threshold, severity: warning, kind: noise, metric: laeq_db,
     above: 80, clear: 70, for_s: 0, clear_for_s: 20}
""")
    feed.sensor("noi-1", "noise")
    eng = _engine(db, city_model, rules)
    for i in range(40):
        feed.write(i * 2, {"noi-1": {"laeq_db": 81 if i % 2 else 78}})
        eng.tick(feed.at(i * 2 + 1))
    alerts = _alerts(db)
    assert len(alerts) == 1 and alerts[0].status == "open"
    # below the clear level, but for less than clear_for_s: still open; then resolved once
    for i in range(40, 60):
        feed.write(i * 2, {"noi-1": {"laeq_db": 60}})
        eng.tick(feed.at(i * 2 + 1))
    alerts = _alerts(db)
    assert len(alerts) == 1 and alerts[0].status == "resolved"
    trail = [e["action"] for e in lifecycle.events(db, alerts[0].id)]
    assert trail == ["open", "auto_resolve"]


def test_building_fire_is_one_alert_per_building(db, feed, city_model):
    b1 = [feed.sensor(f"fir-b1-{i}", "fire", zone_id="Z4-02", building_id="Z4-02-b00001")
          for i in range(6)]
    b2 = [feed.sensor(f"fir-b2-{i}", "fire", zone_id="Z4-02", building_id="Z4-02-b00002")
          for i in range(3)]
    eng = _engine(db, city_model)
    calm = {"smoke_pct": 0.05, "temperature_c": 21, "alarm": 0}
    feed.write(0, {s: calm for s in b1 + b2})
    eng.tick(feed.at(1))
    feed.write(5, {**{s: {"smoke_pct": 30, "temperature_c": 90, "alarm": 1} for s in b1[:4]},
                   **{s: calm for s in b1[4:] + b2}})
    eng.tick(feed.at(6))
    alerts = _alerts(db)
    assert [(a.rule, a.entity_kind, a.entity_id) for a in alerts] == [
        ("fire", "building", "Z4-02-b00001")]
    assert sorted(alerts[0].scope) == sorted(b1[:4])
    # all detectors calm again for clear_for_s (60 s): resolved
    for s in range(10, 90, 10):
        feed.write(s, {x: calm for x in b1 + b2})
        eng.tick(feed.at(s + 1))
    assert lifecycle.get_alert(db, alerts[0].id).status == "resolved"


def test_sudden_speed_collapse_alerts_at_once_slow_congestion_does_not(db, feed, city_model):
    feed.sensor("trf-acc", "traffic", segment_id="S-acc")
    feed.sensor("trf-slow", "traffic", segment_id="S-slow")
    eng = _engine(db, city_model)
    for s in range(0, 60, 10):  # both flow at 40 km/h
        feed.write(s, {"trf-acc": {"speed_kmh": 40}, "trf-slow": {"speed_kmh": 40 - s / 10}})
        eng.tick(feed.at(s + 1))
    assert _alerts(db) == []
    # an accident: 40 -> 4 km/h between two readings; slow congestion loses 10% a reading
    feed.write(62, {"trf-acc": {"speed_kmh": 4}})
    eng.tick(feed.at(63))
    alerts = [a for a in _alerts(db) if a.rule == "speed_collapse"]
    assert [(a.entity_kind, a.entity_id) for a in alerts] == [("segment", "S-acc")]
    assert alerts[0].started_at == feed.at(62)
    assert alerts[0].evidence["change_share"] >= 0.6
    v = 35.0
    for s in range(70, 300, 10):
        v *= 0.9
        feed.write(s, {"trf-slow": {"speed_kmh": v}, "trf-acc": {"speed_kmh": 4}})
        eng.tick(feed.at(s + 1))
    assert [a.entity_id for a in _alerts(db) if a.rule == "speed_collapse"] == ["S-acc"]


def test_crowd_surge_on_a_jump_of_a_zone_s_inflow_only(db, feed, city_model):
    # the shipped rule: a zone counter's entries 4x the lowest of the last 60 s, and >= 100
    for sid, zone, role in (("ppl-big", "Z1-01", "zone"), ("ppl-small", "Z1-02", "zone"),
                            ("ppl-count", "Z1-03", "zone"), ("ppl-gate", "Z1-04", "gate")):
        feed.sensor(sid, "people", zone_id=zone, role=role)
    eng = _engine(db, city_model)
    calm = {"ppl-big": {"people_count": 4000, "entries": 40},
            "ppl-small": {"people_count": 300, "entries": 10},
            "ppl-count": {"people_count": 2000, "entries": 30},
            "ppl-gate": {"people_count": 100, "entries": 5}}
    for s in range(0, 60, 15):
        feed.write(s, calm)
        eng.tick(feed.at(s + 1))
    assert _alerts(db) == []
    # inflow steps up at the onset while the count has barely moved: the leading indicator
    feed.write(60, {"ppl-big": {"people_count": 4200, "entries": 400},
                    # 9x, but a small inflow (below min_value): noise, not a surge
                    "ppl-small": {"people_count": 320, "entries": 90},
                    # the count alone rising 60% with a normal inflow: no surge
                    "ppl-count": {"people_count": 3200, "entries": 35},
                    # gate counters are not selected
                    "ppl-gate": {"people_count": 150, "entries": 800}})
    eng.tick(feed.at(61))
    alerts = _alerts(db)
    assert [(a.rule, a.entity_kind, a.entity_id, a.severity) for a in alerts] == [
        ("crowd_surge", "zone", "Z1-01", "warning")]
    assert alerts[0].started_at == feed.at(60)
    assert alerts[0].evidence["metric"] == "entries"
    assert alerts[0].evidence["value"] == 400
    assert alerts[0].evidence["change_share"] == 9.0
