import time
import urllib.request

import psycopg
import pytest

from citypulse.wire import payload as wp
from citypulse.wire import topics as wt
from tests.ingest.conftest import Publisher, register, wait_until
from tests.support import hold


@pytest.fixture
def cfg(settings):
    return settings.model_copy(update={"batch_max_ms": 50, "metrics_port": 0,
                                       "device_rate_limit": 1e6})


def _port(url):
    return int(url.rsplit(":", 1)[1])


def _rows(db_url, sql, *args):
    with psycopg.connect(db_url, autocommit=True) as conn:
        return conn.execute(sql, args).fetchall()


def _readings(db_url):
    return sorted(_rows(db_url, "SELECT sensor_id, metric, value, "
                                "(extract(epoch FROM time)*1000)::int8 FROM citypulse.readings"))


def test_single_array_gateway_payloads_land(cfg, broker, start_collector):
    p = cfg.topic_prefix
    register(cfg.database_url, [("t1", "traffic", None), ("a1", "air", "gw1"),
                                ("f1", "fire", "gw1")])
    c = start_collector(cfg)
    now = int(time.time() * 1000)
    pub = Publisher(_port(broker.url))
    pub.publish(wt.telemetry("t1", p), {"ts": now, "seq": 1, "values": {"speed_kmh": 38.5, "vehicle_count": 12}})
    pub.publish(wt.telemetry("t1", p), [{"ts": now + 1, "seq": 2, "values": {"speed_kmh": 40}},
                                        {"ts": now + 2, "seq": 3, "values": {"occupancy_pct": 5}}])
    pub.publish(wt.gateway("gw1", p), {"a1": [{"ts": now, "values": {"pm25_ugm3": 12}}],
                                       "f1": [{"ts": now, "seq": 7, "values": {"alarm": 0, "temperature_c": 21}}]})
    pub.publish(wt.status("t1", p), b"online", retain=True)
    pub.publish(wt.telemetry("t1", p), wp.encode({"ts": now + 3, "seq": 4, "values": {"speed_kmh": 7}},
                                                 wp.CONTENT_MSGPACK), content_type=wp.CONTENT_MSGPACK)
    pub.close(sent=5)
    assert wait_until(lambda: len(_readings(cfg.database_url)) == 8, 15)
    assert _readings(cfg.database_url) == sorted([
        ("a1", "pm25_ugm3", 12.0, now), ("f1", "temperature_c", 21.0, now), ("f1", "alarm", 0.0, now),
        ("t1", "vehicle_count", 12.0, now), ("t1", "speed_kmh", 38.5, now),
        ("t1", "speed_kmh", 40.0, now + 1), ("t1", "occupancy_pct", 5.0, now + 2),
        ("t1", "speed_kmh", 7.0, now + 3)])
    assert wait_until(lambda: _rows(cfg.database_url, "SELECT sensor_id, status FROM citypulse.sensor_status")
                      == [("t1", "online")], 10)
    assert c.wait_idle(10)
    assert c.metrics.value("citypulse_ingest_readings_stored_total") == 6
    # t1 sent seq 1, 2, 3, 4: no gap; f1 has only seq 7
    assert (c.metrics.value("citypulse_ingest_seq_gaps_total")
            == c.metrics.value("citypulse_ingest_seq_late_total"))
    assert _rows(cfg.database_url, "SELECT count(*) FROM citypulse.dead_letters") == [(0,)]
    # the metrics endpoint serves the same figures
    text = urllib.request.urlopen(f"http://127.0.0.1:{c.metrics_port}/metrics").read().decode()
    assert "citypulse_ingest_readings_stored_total 6.0" in text
    assert "citypulse_ingest_lag_seconds_bucket" in text


def test_mixed_valid_invalid_split_and_duplicates_dropped(cfg, broker, start_collector):
    p = cfg.topic_prefix
    register(cfg.database_url, [("t1", "traffic", None), ("t2", "traffic", "gwA")])
    c = start_collector(cfg)
    now = int(time.time() * 1000)
    pub = Publisher(_port(broker.url))
    pub.publish(wt.telemetry("t1", p), {"ts": now, "seq": 1, "values": {"speed_kmh": 30, "occupancy_pct": 300,
                                                                         "smoke_pct": 1}})
    pub.publish(wt.telemetry("ghost", p), {"ts": now, "values": {"speed_kmh": 1}})
    pub.publish(wt.telemetry("t1", p), b"{not json")
    pub.publish(wt.telemetry("t1", p), {"ts": now - 30 * 86_400_000, "values": {"speed_kmh": 1}})
    pub.publish(wt.gateway("gwB", p), {"t2": [{"ts": now, "values": {"speed_kmh": 1}}],
                                       "t1": [{"ts": now + 5, "values": {"speed_kmh": 2}}]})
    pub.publish(wt.status("t1", p), b"sleepy")
    # duplicates: the same reading twice, and a redelivery that adds a new metric
    wait_until(lambda: pub.acked >= 6, 10)
    assert c.wait_idle(10)
    pub.publish(wt.telemetry("t1", p), {"ts": now, "seq": 1, "values": {"speed_kmh": 30}})
    wait_until(lambda: pub.acked >= 7, 10)
    assert c.wait_idle(10)
    pub.publish(wt.telemetry("t1", p), {"ts": now, "seq": 1, "values": {"vehicle_count": 4}})
    pub.close(sent=8)
    assert c.wait_idle(15) and wait_until(
        lambda: _rows(cfg.database_url, "SELECT count(*) FROM citypulse.dead_letters")[0][0] == 8, 15)
    d = dict(_rows(cfg.database_url, "SELECT reason, count(*) FROM citypulse.dead_letters GROUP BY 1"))
    assert d == {"bad_timestamp": 1, "malformed": 2, "out_of_range": 1, "unknown_metric": 1,
                 "unknown_sensor": 1, "wrong_gateway": 2}
    assert _readings(cfg.database_url) == sorted([("t1", "vehicle_count", 4.0, now), ("t1", "speed_kmh", 30.0, now)])
    assert c.metrics.value("citypulse_ingest_duplicates_total") >= 1
    bad = _rows(cfg.database_url, "SELECT topic, payload, sensor_id FROM citypulse.dead_letters WHERE reason = 'unknown_sensor'")
    assert bad[0][0] == wt.telemetry("ghost", p) and bad[0][2] == "ghost" and b"speed_kmh" in bad[0][1]
    assert c.metrics.value("citypulse_ingest_dead_letters_total", reason="wrong_gateway") == d["wrong_gateway"]


def test_rate_limit_dead_letters_flooder_only(cfg, broker, start_collector):
    p = cfg.topic_prefix
    cfg = cfg.model_copy(update={"device_rate_limit": 10.0})
    register(cfg.database_url, [("loud", "noise", None), ("calm", "noise", None)])
    c = start_collector(cfg)
    now = int(time.time() * 1000)
    pub = Publisher(_port(broker.url))
    for i in range(200):
        pub.publish(wt.telemetry("loud", p), {"ts": now + i, "seq": i, "values": {"laeq_db": 60}})
    for i in range(5):
        pub.publish(wt.telemetry("calm", p), {"ts": now + i, "seq": i, "values": {"laeq_db": 40}})
        hold(0.12, "calm sends at ~8/s, under the 10/s limit under test")
    pub.close(sent=205)
    # acked by the broker is not yet received by the collector: wait for all 205 to land
    assert wait_until(lambda: _rows(cfg.database_url, "SELECT (SELECT count(*) FROM citypulse.raw)"
                                    " + (SELECT count(*) FROM citypulse.dead_letters)") == [(205,)], 30)
    assert c.wait_idle(15)
    got = dict(_rows(cfg.database_url, "SELECT s.sensor_id, count(*) FROM citypulse.raw r JOIN citypulse.sensors s ON s.id = r.sensor GROUP BY 1"))
    limited = _rows(cfg.database_url, "SELECT sensor_id, count(*) FROM citypulse.dead_letters WHERE reason = 'rate_limited' GROUP BY 1")
    assert got["calm"] == 5
    assert dict(limited).get("calm") is None
    assert dict(limited)["loud"] >= 150 and got["loud"] + dict(limited)["loud"] == 200
    assert c.metrics.value("citypulse_ingest_dead_letters_total", reason="rate_limited") == dict(limited)["loud"]


def test_registry_refreshed_on_unknown_sensor(cfg, broker, start_collector):
    p = cfg.topic_prefix
    register(cfg.database_url, [("old", "water", None)])
    c = start_collector(cfg)
    register(cfg.database_url, [("new", "water", None)])
    c._registry_at = 0  # the rate limit (5 s) has passed
    pub = Publisher(_port(broker.url))
    pub.publish(wt.telemetry("new", p), {"ts": int(time.time() * 1000), "values": {"level_m": 1.5}})
    pub.close(sent=1)
    assert wait_until(lambda: _readings(cfg.database_url), 10)
    assert _rows(cfg.database_url, "SELECT count(*) FROM citypulse.dead_letters") == [(0,)]


def test_permanent_db_error_isolated_by_bisection(cfg, broker, db, start_collector):
    p = cfg.topic_prefix
    register(cfg.database_url, [(f"x{i}", "traffic", None) for i in range(20)])
    # a constraint the database enforces but validation does not know about
    db.execute("ALTER TABLE citypulse.raw ADD CONSTRAINT no_magic CHECK (v1 IS DISTINCT FROM 123.25)")
    c = start_collector(cfg.model_copy(update={"batch_max_ms": 500}))
    now = int(time.time() * 1000)
    pub = Publisher(_port(broker.url))
    for i in range(20):
        pub.publish(wt.telemetry(f"x{i}", p), {"ts": now, "seq": 0,
                                               "values": {"speed_kmh": 123.25 if i == 7 else 50}})
    pub.close(sent=20)
    assert c.wait_idle(15)
    assert _rows(cfg.database_url, "SELECT count(*) FROM citypulse.raw") == [(19,)]
    bad = _rows(cfg.database_url, "SELECT reason, detail FROM citypulse.dead_letters")
    assert len(bad) == 1 and bad[0][0] == "malformed" and "no_magic" in bad[0][1]
    assert c.metrics.value("citypulse_ingest_db_errors_total", kind="permanent") >= 1


def test_abuse_never_breaks_the_collector(cfg, broker, start_collector):
    import os
    import random

    p = cfg.topic_prefix
    cfg = cfg.model_copy(update={"max_payload_bytes": 2048})
    register(cfg.database_url, [("v1", "gas", "gw")])
    c = start_collector(cfg)
    rnd = random.Random(7)
    nasty = [b"", b"null", b"NaN", b'{"ts": 1, "values": {"co_ppm": Infinity}}', b"[" * 5000 + b"]" * 5000,
             b'{"ts": 1e400, "values": {"co_ppm": 1}}', b'{"values": {"co_ppm": [1, 2]}}',
             b'{"v1": "nope"}', b'{"ts": "2025-13-45T99:00:00Z", "values": {"co_ppm": 1}}',
             b"x" * 4096, b'{"ts": -1, "values": {"co_ppm": 1}}', b'{"seq": 1.5, "values": {"co_ppm": 1}}',
             "{\"ts\": 1, \"values\": {\"\u00e9\\u0000\": 1}}".encode()]
    nasty += [os.urandom(rnd.randint(1, 300)) for _ in range(40)]
    topics = [wt.telemetry("v1", p), wt.gateway("gw", p), wt.telemetry("nobody", p), wt.status("v1", p)]
    pub = Publisher(_port(broker.url))
    for i, data in enumerate(nasty):
        pub.publish(topics[i % len(topics)], data)
    pub.publish(wt.gateway("gw", p), b'{"a\\u0000b": [{"ts": 1, "values": {"co_ppm": 1}}]}')
    nasty.append(b"nul in a sensor id")
    pub.close(sent=len(nasty))
    assert c.wait_idle(20)
    dead = _rows(cfg.database_url, "SELECT count(DISTINCT (topic, payload, detail)), count(*) FROM citypulse.dead_letters")[0]
    assert dead[1] >= len(nasty) - 1  # every message left at least one dead letter (b"" on status too)
    assert _rows(cfg.database_url, "SELECT count(*) FROM citypulse.raw") == [(0,)]
    assert _rows(cfg.database_url, "SELECT reason FROM citypulse.dead_letters WHERE sensor_id = %s",
                 "a\\x00b") == [("unknown_sensor",)]
    assert c.metrics.value("citypulse_ingest_internal_errors_total") == 0


def test_gateway_heartbeats_recorded_even_empty_or_rejected(cfg, broker, start_collector):
    """Any message on a gateway's topic is its heartbeat: an empty ``{}``, readings, junk."""
    p = cfg.topic_prefix
    register(cfg.database_url, [("a1", "air", "gw1")])
    c = start_collector(cfg)
    now = int(time.time() * 1000)
    pub = Publisher(_port(broker.url))
    pub.publish(wt.gateway("gw1", p), {})
    pub.publish(wt.gateway("gw1", p), {"a1": [{"ts": now, "values": {"pm25_ugm3": 12}}]})
    pub.publish(wt.gateway("gw2", p), {})
    pub.publish(wt.gateway("gw3", p), b"{not json")
    pub.publish(wt.telemetry("a1", p), {"ts": now + 1, "values": {"pm25_ugm3": 13}})
    pub.close(sent=5)
    assert c.wait_idle(10)

    def seen():
        return dict(_rows(cfg.database_url, "SELECT gateway_id, messages FROM "
                                            "citypulse.gateway_seen"))
    assert wait_until(lambda: seen() == {"gw1": 2, "gw2": 1, "gw3": 1}, 10), seen()
    lag = _rows(cfg.database_url, "SELECT max(abs(extract(epoch FROM now() - last_seen))) "
                                  "FROM citypulse.gateway_seen")[0][0]
    assert lag < 30
    # the empty heartbeat is not a dead letter; the junk one is
    assert _rows(cfg.database_url, "SELECT topic FROM citypulse.dead_letters") == [
        (wt.gateway("gw3", p),)]
