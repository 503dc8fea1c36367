"""Grouping: a gateway outage gives one alert with its scope; a storm one city-wide alert."""

from __future__ import annotations

from analytics import lifecycle
from analytics.engine import Engine
from analytics.rules import load_rules


def test_gateway_outage_gives_one_grouped_alert_then_resolves(db, feed, city_model):
    gw1 = [feed.sensor(f"fir-a{i}", "fire", gateway="gw-1", zone_id="Z2-01") for i in range(10)]
    gw2 = [feed.sensor(f"fir-b{i}", "fire", gateway="gw-2", zone_id="Z2-02") for i in range(10)]
    eng = Engine(db, load_rules(), city=city_model)
    ok = {"smoke_pct": 0.1, "temperature_c": 20, "alarm": 0}
    for s in range(0, 60, 15):
        feed.write(s, {sid: ok for sid in gw1 + gw2})
        eng.tick(feed.at(s + 1))
    # gw-1 goes silent at 60 s; its sensors' interval is 15 s -> offline after 45 s
    for s in range(60, 150, 5):
        if s % 15 == 0:
            feed.write(s, {sid: ok for sid in gw2})
        eng.tick(feed.at(s + 1))
    alerts = [a for a in lifecycle.list_alerts(db, open_only=False) if a.rule == "sensor_offline"]
    assert [(a.entity_kind, a.entity_id, a.status) for a in alerts] == [
        ("gateway", "gw-1", "open")]
    assert sorted(alerts[0].scope) == sorted(gw1)
    assert alerts[0].zone_id == "Z2-01"
    # it comes back: resolved (no sensor alerts left behind)
    for s in range(150, 180, 15):
        feed.write(s, {sid: ok for sid in gw1 + gw2})
        eng.tick(feed.at(s + 1))
    alerts = lifecycle.list_alerts(db, open_only=False)
    assert [(a.entity_id, a.status) for a in alerts] == [("gw-1", "resolved")]


def test_single_silent_sensor_gives_a_zone_alert(db, feed, city_model):
    sids = [feed.sensor(f"gas-{i}", "gas", gateway="gw-9") for i in range(5)]
    eng = Engine(db, load_rules(), city=city_model)
    for s in range(0, 120, 15):
        feed.write(s, {sid: {"ch4_lel_pct": 1, "co_ppm": 1} for sid in
                       (sids if s < 30 else sids[1:])})
        eng.tick(feed.at(s + 1))
    alerts = lifecycle.list_alerts(db, open_only=False)
    # the default rule groups silent sensors per zone: one zone alert, gas-0 its scope
    assert [(a.rule, a.entity_kind, list(a.scope)) for a in alerts] == [
        ("sensor_offline", "zone", ["gas-0"])]


def test_silent_sensors_in_one_zone_give_one_alert_with_scope(db, feed, city_model):
    zone = next(z for z in city_model.zones if z != "Z-LAKE")
    sids = [feed.sensor(f"air-{i}", "air", zone_id=zone) for i in range(6)]
    eng = Engine(db, load_rules(), city=city_model)
    ok = {"pm25_ugm3": 10, "pm10_ugm3": 20, "no2_ugm3": 30}
    for s in range(0, 400, 60):  # air reports every 60 s: offline after 180 s of silence
        feed.write(s, {sid: ok for sid in (sids if s < 60 else sids[3:])})
        eng.tick(feed.at(s + 1))
    alerts = [a for a in lifecycle.list_alerts(db, open_only=False) if a.rule == "sensor_offline"]
    assert [(a.entity_kind, a.entity_id, a.status) for a in alerts] == [("zone", zone, "open")]
    assert sorted(alerts[0].scope) == sorted(sids[:3])
    for s in range(400, 520, 60):  # they come back: the zone alert resolves
        feed.write(s, {sid: ok for sid in sids})
        eng.tick(feed.at(s + 1))
    alerts = [a for a in lifecycle.list_alerts(db, open_only=False) if a.rule == "sensor_offline"]
    assert [(a.entity_id, a.status) for a in alerts] == [(zone, "resolved")]


def test_city_wide_storm_gives_one_alert_with_scope(db, feed, city_model):
    zones = [z for z in city_model.zones if z != "Z-LAKE"][:8]
    gauges = [feed.sensor(f"rain-{i}", "water", zone_id=z, role="rain")
              for i, z in enumerate(zones)]
    eng = Engine(db, load_rules(), city=city_model)
    for s in range(0, 40, 5):
        feed.write(s, {g: {"rain_mm_h": 60} for g in gauges})
        eng.tick(feed.at(s + 1))
    alerts = lifecycle.list_alerts(db, open_only=False)
    assert [(a.rule, a.entity_kind, a.entity_id) for a in alerts] == [
        ("heavy_rain", "city", "city")]
    assert sorted(alerts[0].scope) == sorted(f"zone:{z}" for z in zones)  # grouped by zone
    assert alerts[0].evidence["entities"] == 8


def test_flood_over_many_zones_is_one_alert_that_takes_over_the_storm(db, feed, city_model):
    import shapely
    from shapely.geometry import shape

    zones = [z for z in sorted(city_model.zones) if z.startswith("Z2-")][:6]
    assert len(zones) == 6
    rain = {z: feed.sensor(f"rain-{z}", "water", zone_id=z, role="rain") for z in zones}
    drain = {z: feed.sensor(f"drain-{z}", "water", zone_id=z, role="drain") for z in zones}
    eng = Engine(db, load_rules(), city=city_model)
    # the cloudburst: heavy rain over 6 zones at once, drains still low -> one storm alert
    for s in range(0, 30, 5):
        feed.write(s, {**{g: {"rain_mm_h": 80} for g in rain.values()},
                       **{d: {"level_m": 0.3} for d in drain.values()}})
        eng.tick(feed.at(s + 1))
    (storm,) = lifecycle.list_alerts(db)
    assert (storm.rule, storm.entity_kind) == ("heavy_rain", "city")
    # the storm's place is its zones' outline, not nowhere
    assert storm.geometry["type"] in ("Polygon", "MultiPolygon")
    # the drains fill: flood risk in every zone -> ONE flood alert, not six
    for s in range(30, 60, 5):
        feed.write(s, {**{g: {"rain_mm_h": 80} for g in rain.values()},
                       **{d: {"level_m": 1.4} for d in drain.values()}})
        eng.tick(feed.at(s + 1))
    (flood,) = lifecycle.list_alerts(db)
    assert (flood.rule, flood.entity_kind, flood.severity) == ("flood_risk", "city", "critical")
    assert sorted(flood.scope) == sorted(f"zone:{z}" for z in zones)
    assert flood.started_at == storm.started_at == feed.at(0)  # it took over the storm
    assert flood.evidence["supersedes"][0]["id"] == storm.id
    outline = shape(flood.geometry)
    for z in zones:  # every flooded zone lies in the alert's place; its centre among them
        assert outline.buffer(1e-6).contains(shape(city_model.zones[z]["geometry"]))
    assert outline.buffer(1e-3).contains(shapely.Point(flood.lon, flood.lat))
    old = lifecycle.get_alert(db, storm.id)
    assert old.status == "resolved"
    assert lifecycle.events(db, storm.id)[-1]["action"] == "supersede"


def test_readings_stored_late_do_not_make_sensors_look_offline(db, feed, city_model):
    # a collector stalled for 10 s: each reading is committed 10 s after its time, later
    # than the engine's fetch window looks back; the sensors are not offline for that
    sids = [feed.sensor(f"fir-l{i}", "fire", zone_id="Z2-01") for i in range(4)]
    eng = Engine(db, load_rules(), city=city_model)
    ok = {"smoke_pct": 0.1, "temperature_c": 20, "alarm": 0}
    feed.write(0, {sid: ok for sid in sids})
    for s in range(1, 200):
        if s >= 10 and (s - 10) % 15 == 0:
            feed.write(s - 10, {sid: ok for sid in sids})
        eng.tick(feed.at(s))
    assert eng.stats["late_rows"] > 0
    assert lifecycle.list_alerts(db, open_only=False) == []
    # while a sensor that really stopped is still found out
    for s in range(200, 300):
        if (s - 10) % 15 == 0:
            feed.write(s - 10, {sid: ok for sid in sids[1:]})
        eng.tick(feed.at(s))
    alerts = lifecycle.list_alerts(db, open_only=False)
    assert [(a.rule, a.entity_kind, list(a.scope)) for a in alerts] == [
        ("sensor_offline", "zone", [sids[0]])]
