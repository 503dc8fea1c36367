"""Gateway heartbeats: a gateway that goes dark is alerted within 3 heartbeats, whatever
its sensors' intervals; a stalled pipeline makes no gateway look dark."""

from __future__ import annotations

from analytics import lifecycle
from analytics.engine import Engine
from analytics.rules import load_rules

OK = {"pm25_ugm3": 10, "pm10_ugm3": 20, "no2_ugm3": 30}


def _setup(db, feed, city_model):
    gw1 = [feed.sensor(f"air-a{i}", "air", gateway="gw-1", zone_id="Z2-01") for i in range(5)]
    gw2 = [feed.sensor(f"air-b{i}", "air", gateway="gw-2", zone_id="Z2-02") for i in range(5)]
    feed.write(0, {sid: OK for sid in gw1 + gw2})  # air reports every 60 s
    return gw1, gw2, Engine(db, load_rules(), city=city_model)


def _beat(feed, s, gateways):
    feed.store.touch_gateways(feed.conn, {g: (feed.at(s), 1) for g in gateways})


def _offline(db):
    return [(a.entity_kind, a.entity_id, a.status) for a in
            lifecycle.list_alerts(db, open_only=False) if a.rule == "sensor_offline"]


def test_dark_gateway_alerted_within_three_heartbeats(db, feed, city_model):
    gw1, gw2, eng = _setup(db, feed, city_model)
    for s in range(1, 11):
        _beat(feed, s, ["gw-1", "gw-2"])
        eng.tick(feed.at(s + 0.5))
    assert _offline(db) == []
    # gw-1's heartbeat stops after 10 s: dark once 3 s pass without one
    for s in range(11, 13):
        _beat(feed, s, ["gw-2"])
        eng.tick(feed.at(s + 0.5))
    assert _offline(db) == []
    _beat(feed, 13, ["gw-2"])
    eng.tick(feed.at(13.0))
    alerts = [a for a in lifecycle.list_alerts(db) if a.rule == "sensor_offline"]
    assert [(a.entity_kind, a.entity_id) for a in alerts] == [("gateway", "gw-1")]
    a = alerts[0]
    assert sorted(a.scope) == sorted(gw1)  # every sensor behind it, though none is late yet
    assert a.started_at == feed.at(10) and a.zone_id == "Z2-01"
    assert a.evidence["last_heartbeat_ms"] == int(feed.at(10).timestamp() * 1000)
    # its sensors' own silence later adds no alerts (the gateway alert covers them)
    for s in range(15, 300, 5):
        _beat(feed, s, ["gw-2"])
        if s % 60 == 0:
            feed.write(s, {sid: OK for sid in gw2})
        eng.tick(feed.at(s + 0.5))
    assert _offline(db) == [("gateway", "gw-1", "open")]
    # the heartbeat resumes and the sensors report: resolved
    for s in range(300, 306):
        _beat(feed, s, ["gw-1", "gw-2"])
        if s == 300:
            feed.write(s, {sid: OK for sid in gw1 + gw2})
        eng.tick(feed.at(s + 0.5))
    assert _offline(db) == [("gateway", "gw-1", "resolved")]


def test_stalled_pipeline_makes_no_gateway_dark(db, feed, city_model):
    """No heartbeats and no readings arrive at all (collector or broker down): that is not
    every gateway going dark, so no gateway alerts."""
    _, _, eng = _setup(db, feed, city_model)
    for s in range(1, 6):
        _beat(feed, s, ["gw-1", "gw-2"])
        eng.tick(feed.at(s + 0.5))
    for s in range(6, 40):
        eng.tick(feed.at(s + 0.5))
    assert _offline(db) == []
