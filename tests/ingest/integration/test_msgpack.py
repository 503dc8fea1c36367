"""MessagePack payloads (MQTT 5 content type) through the real broker into the collector."""

import time

import msgspec
import psycopg
import pytest

from citypulse.wire import payload as wp
from citypulse.wire import topics as wt
from tests.ingest.conftest import Publisher, register, wait_until


@pytest.fixture
def cfg(settings):
    return settings.model_copy(update={"batch_max_ms": 50, "device_rate_limit": 1e6})


def _rows(db_url, sql, *args):
    with psycopg.connect(db_url, autocommit=True) as conn:
        return conn.execute(sql, args).fetchall()


def test_msgpack_gateway_and_telemetry_next_to_json(cfg, broker, start_collector):
    p = cfg.topic_prefix
    register(cfg.database_url, [("m1", "traffic", "gwm"), ("m2", "traffic", "gwm"),
                                ("j1", "traffic", None)])
    c = start_collector(cfg)
    now = int(time.time() * 1000)
    pub = Publisher(int(broker.url.rsplit(":", 1)[1]))
    gw = {"m1": [{"ts": now, "seq": 0, "values": {"speed_kmh": 30.5, "vehicle_count": 3}},
                 {"ts": now + 1, "seq": 1, "values": {"speed_kmh": 31}}],
          "m2": [{"ts": now, "seq": 0, "values": {"occupancy_pct": 12}}]}
    pub.publish(wt.gateway("gwm", p), msgspec.msgpack.encode(gw), content_type=wp.CONTENT_MSGPACK)
    pub.publish(wt.telemetry("j1", p), {"ts": now, "seq": 0, "values": {"speed_kmh": 50}})
    # announced as MessagePack but not: one dead letter, nothing else lost
    pub.publish(wt.telemetry("j1", p), b"\xc1\xc1garbage", content_type=wp.CONTENT_MSGPACK)
    # a bad value inside a MessagePack reading: that reading is dead-lettered with its reason
    pub.publish(wt.telemetry("j1", p), msgspec.msgpack.encode(
        {"ts": now + 5, "seq": 1, "values": {"speed_kmh": "fast"}}), content_type=wp.CONTENT_MSGPACK)
    pub.close(sent=4)
    assert c.wait_idle(15)
    assert wait_until(lambda: _rows(cfg.database_url, "SELECT count(*) FROM citypulse.readings")
                      == [(5,)], 15)
    got = sorted(_rows(cfg.database_url, "SELECT sensor_id, metric, value, "
                       "(extract(epoch FROM time)*1000)::int8 FROM citypulse.readings"))
    assert got == sorted([("m1", "speed_kmh", 30.5, now), ("m1", "vehicle_count", 3.0, now),
                          ("m1", "speed_kmh", 31.0, now + 1), ("m2", "occupancy_pct", 12.0, now),
                          ("j1", "speed_kmh", 50.0, now)])
    dead = sorted(_rows(cfg.database_url, "SELECT reason, detail FROM citypulse.dead_letters"))
    assert len(dead) == 2 and {r for r, _ in dead} == {wp.MALFORMED}
    assert any("MessagePack" in d for _, d in dead)
    assert any("not a finite number" in d for _, d in dead)
    assert _rows(cfg.database_url, "SELECT count(*) FROM citypulse.gateway_seen "
                 "WHERE gateway_id = 'gwm'") == [(1,)]


def test_burst_of_small_messages_read_in_chunks_all_stored_once(cfg, broker, start_collector):
    """Many packets per socket read (ingest.mqttfast): each handled once, none left unread."""
    p = cfg.topic_prefix
    sensors = [f"b{i}" for i in range(20)]
    register(cfg.database_url, [(s, "traffic", None) for s in sensors])
    c = start_collector(cfg)
    now = int(time.time() * 1000)
    pub = Publisher(int(broker.url.rsplit(":", 1)[1]))
    n = 0
    for seq in range(100):
        for s in sensors:
            doc = {"ts": now + seq, "seq": seq, "values": {"vehicle_count": seq % 50}}
            if seq % 2:
                pub.publish(wt.telemetry(s, p), msgspec.msgpack.encode(doc),
                            content_type=wp.CONTENT_MSGPACK)
            else:
                pub.publish(wt.telemetry(s, p), doc)
            n += 1
    pub.close(sent=n)
    assert wait_until(lambda: c.metrics.value("citypulse_ingest_readings_stored_total") == n, 30)
    assert c.wait_idle(15)
    assert _rows(cfg.database_url, "SELECT count(*), count(DISTINCT (sensor, seq)) "
                 "FROM citypulse.raw") == [(n, n)]
    # writers commit batches in any order: every gap seen is filled later, none is a loss
    assert (c.metrics.value("citypulse_ingest_seq_gaps_total")
            == c.metrics.value("citypulse_ingest_seq_late_total"))


def test_simulator_publisher_sends_msgpack_with_content_type(cfg, broker, start_collector):
    """``sim run --encoding msgpack``'s publisher: MessagePack, announced, stored like JSON."""
    from device_sim import encode
    from device_sim.mqtt import Publisher as SimPublisher

    p = cfg.topic_prefix
    register(cfg.database_url, [("g1", "traffic", "gws"), ("g2", "traffic", "gws")])
    c = start_collector(cfg)
    now = int(time.time() * 1000)
    doc = {"g1": [{"ts": now, "seq": 0, "values": {"speed_kmh": 12.5}}],
           "g2": [{"ts": now, "seq": 0, "values": {"vehicle_count": 4}}]}
    data, ctype = encode.payload(wp.encode(doc), "msgpack")
    assert ctype == wp.CONTENT_MSGPACK and msgspec.msgpack.decode(data) == doc
    assert encode.payload(b"online", "msgpack") == (b"online", None)
    pub = SimPublisher(broker.url, "sim-mp", encoding="msgpack")
    pub.connect()
    assert pub.publish(wt.gateway("gws", p), wp.encode(doc), qos=1)
    assert pub.publish(wt.gateway("gws", p), b"{garbled", qos=1)  # a fault stays a fault
    pub.close()
    assert wait_until(lambda: _rows(cfg.database_url, "SELECT count(*) FROM citypulse.raw")
                      == [(2,)], 15)
    assert wait_until(lambda: _rows(cfg.database_url, "SELECT reason FROM citypulse.dead_letters")
                      == [(wp.MALFORMED,)], 15)
    assert c.wait_idle(10)
