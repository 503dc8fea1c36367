"""SensorThings MQTT: a real collector announces commits, the relay publishes Observations.

A private broker, a fresh PostgreSQL database, the real collector (in process), the relay
(in process) and the real web app serving /sta/v1.1: a subscriber on
``v1.1/Datastreams(<id>)/Observations`` gets exactly the committed observations, each the
JSON the HTTP API returns for it; dead letters never go out; with the setting off the
collector announces nothing.
"""

from __future__ import annotations

import threading
import time
import uuid

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
import requests

from citypulse import apikeys, schema
from citypulse.settings import Settings
from citypulse.wire import committed as wc
from citypulse.wire import topics as wt
from ingest.metrics import COMMITTED_PUBLISHED, total
from standards.sta.model import datastream_id
from standards.sta.mqtt import Relay
from tests.ingest.conftest import Publisher, register, start_collector  # noqa: F401 - fixture
from tests.support import stays_false, wait_until


class Subscriber:
    """A QoS 1 subscriber that keeps (topic, payload) of everything it receives."""

    def __init__(self, port: int, filters: list[str]) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.ready = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                             client_id="sub-" + uuid.uuid4().hex[:8], protocol=mqtt.MQTTv5)
        self.c.on_connect = lambda c, *_a: c.subscribe([(f, 1) for f in filters])
        self.c.on_subscribe = lambda *_a: self.ready.set()
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        assert self.ready.wait(10)

    def _on_message(self, _c, _u, msg) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload))

    def got(self, topic: str | None = None) -> list[dict]:
        with self._lock:
            return [orjson.loads(p) for t, p in self.messages if topic in (None, t)]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@pytest.fixture
def web(db_url, tmp_path):
    """The real web app on a fresh database, and an API key that may read."""
    from dashboards.app import create_app
    from dashboards.serve import serve

    with psycopg.connect(db_url, autocommit=True) as conn:
        _info, key = apikeys.create(conn, "sta-mqtt-test", ["api:read"], created_by="test")
    served = serve(create_app(Settings(database_url=db_url, data_dir=tmp_path / "web",
                                       dashboard_secret="sta-mqtt-test-secret-0123456789")))
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {key}"
    yield served.url, http
    served.stop()


@pytest.fixture
def relay_of():
    relays: list[Relay] = []

    def _start(cfg) -> Relay:
        r = Relay(cfg, client_id="sta-" + uuid.uuid4().hex[:8])
        r.start()
        assert r.wait_ready(10)
        relays.append(r)
        return r
    yield _start
    for r in relays:
        r.stop()


def _sensor_ids(db_url: str) -> dict[str, int]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        return dict(conn.execute("SELECT sensor_id, id FROM citypulse.sensors").fetchall())


def _dead(db_url: str) -> int:
    with psycopg.connect(db_url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM citypulse.dead_letters").fetchone()[0]


def test_subscriber_gets_exactly_the_committed_observations(settings, broker, web, relay_of,
                                                            start_collector):  # noqa: F811
    base, http = web
    cfg = settings.model_copy(update={"sta_mqtt": True, "batch_max_ms": 50, "writer_connections": 1,
                                      "device_rate_limit": 1e6, "web_public_url": base})
    p = cfg.topic_prefix
    register(cfg.database_url, [("m1", "traffic", None), ("m2", "air", None)])
    ids = _sensor_ids(cfg.database_url)
    speed = datastream_id(ids["m1"], 1)      # traffic slots: vehicle_count, speed_kmh, occupancy
    sub = Subscriber(_port(broker.url), [wt.sta_datastream_observations(speed), wt.sta_all()])
    relay = relay_of(cfg)
    c = start_collector(cfg)
    now = (int(time.time()) - 60) * 1000
    pub = Publisher(_port(broker.url))
    # occupancy 300 % is out of range: that metric is dead-lettered, the speed stored
    pub.publish(wt.telemetry("m1", p), {"ts": now, "seq": 1,
                                        "values": {"speed_kmh": 30.5, "occupancy_pct": 300}})
    pub.publish(wt.telemetry("m1", p), {"ts": now + 1500, "seq": 2, "values": {"speed_kmh": 41}})
    pub.publish(wt.telemetry("m2", p), {"ts": now, "values": {"pm25_ugm3": 12}})
    pub.publish(wt.telemetry("ghost", p), {"ts": now, "values": {"speed_kmh": 3}})
    wait_until(lambda: pub.acked >= 4 and c.wait_idle(1) and _dead(cfg.database_url) == 2, 20,
               "the first batch committed")
    # a redelivery with another speed and a new metric: the store keeps 30.5, adds the count
    pub.publish(wt.telemetry("m1", p), {"ts": now, "seq": 1,
                                        "values": {"speed_kmh": 99, "vehicle_count": 4}})
    pub.close(sent=5)

    def http_ids(path: str) -> set[int]:
        r = http.get(f"{base}/sta/v1.1/{path}", timeout=30)
        r.raise_for_status()
        return {o["@iot.id"] for o in r.json()["value"]}

    every = wait_until(lambda: len(http_ids("Observations")) == 4 and http_ids("Observations"),
                       20, "four observations stored")
    # the vehicle count comes only with the redelivery's batch, the last one announced: once
    # it arrived, everything announced before it has too (one relay, in order)
    wait_until(lambda: every <= {o["@iot.id"] for o in sub.got()}, 20, "every observation relayed")
    got = sub.got()
    assert {o["@iot.id"] for o in got} == every  # nothing else: no dead letter went out
    on_speed = sub.got(wt.sta_datastream_observations(speed))
    assert {o["@iot.id"] for o in on_speed} == http_ids(f"Datastreams({speed})/Observations")
    assert len({o["@iot.id"] for o in on_speed}) == 2
    for o in got:  # each message is the entity GET Observations(id) returns
        r = http.get(o["@iot.selfLink"], timeout=30)
        assert r.status_code == 200 and r.json() == o
    assert 99.0 not in [o["result"] for o in on_speed]
    assert c.metrics.value(total(COMMITTED_PUBLISHED)) >= 2 and relay.bad == 0


def test_setting_off_announces_nothing(settings, broker, relay_of, start_collector):  # noqa: F811
    cfg = settings.model_copy(update={"batch_max_ms": 50, "device_rate_limit": 1e6})
    assert cfg.sta_mqtt is False  # the default
    register(cfg.database_url, [("m1", "traffic", None)])
    sub = Subscriber(_port(broker.url), [wt.committed(cfg.topic_prefix), wt.sta_all()])
    relay_of(cfg)
    c = start_collector(cfg)
    pub = Publisher(_port(broker.url))
    pub.publish(wt.telemetry("m1", cfg.topic_prefix),
                {"ts": int(time.time() * 1000), "values": {"speed_kmh": 30}})
    pub.close(sent=1)
    wait_until(lambda: c.metrics.value(total("citypulse_ingest_readings_stored")) == 1, 20,
               "the reading stored")
    assert c.announcer is None and c.writer.announce is None
    assert c.metrics.value(total(COMMITTED_PUBLISHED)) == 0
    assert stays_false(lambda: sub.messages, within=1.0), sub.messages


def test_relay_counts_bad_messages_and_goes_on(settings, broker, relay_of):
    relay = relay_of(settings)
    sub = Subscriber(_port(broker.url), [wt.sta_all()])
    pub = Publisher(_port(broker.url))
    topic = wt.committed(settings.topic_prefix)
    pub.publish(topic, b"\xc1 not msgpack")
    pub.publish(topic, wc._encoder.encode([2, []]))
    pub.publish(topic, wc._encoder.encode([1, [["x", 1, 2.0]]]))
    good = wc.encode([(wc.EPOCH.replace(year=2026), 3, None, 7.25)])
    pub.publish(topic, good)
    pub.close(sent=4)
    wait_until(lambda: sub.got(), 10, "the good message relayed")
    assert relay.bad == 3 and relay.received == 4
    assert [(o["result"], o["phenomenonTime"]) for o in sub.got()] == [
        (7.25, "2026-01-01T00:00:00.000Z")]
    assert sub.messages[0][0] == wt.sta_datastream_observations(datastream_id(3, 0))


def test_relay_comes_back_after_the_broker_restarts(settings, broker_own, relay_of):
    cfg = settings.model_copy(update={"mqtt_url": broker_own.url})
    relay = relay_of(cfg)
    broker_own.stop()
    wait_until(lambda: not relay.connected, 10, "the relay saw the broker go")
    broker_own.start()
    assert relay.wait_ready(20), "the relay did not reconnect"
    sub = Subscriber(broker_own.port, [wt.sta_all()])
    pub = Publisher(broker_own.port)
    pub.publish(wt.committed(cfg.topic_prefix),
                wc.encode([(wc.EPOCH.replace(year=2026), 5, None, 1.0, 2.0)]))
    pub.close(sent=1)
    wait_until(lambda: len(sub.got()) == 2, 10, "both observations relayed")
    assert sorted(o["result"] for o in sub.got()) == [1.0, 2.0]


def test_a_spooled_batch_goes_out_when_it_is_drained_into_the_database(
        pg_own, broker, topic_prefix, tmp_path, start_collector):  # noqa: F811
    cfg = Settings(database_url=pg_own.url, mqtt_url=broker.url, topic_prefix=topic_prefix,
                   spool_dir=tmp_path / "spool", batch_max_ms=50, device_rate_limit=1e5,
                   sta_mqtt=True)
    with psycopg.connect(pg_own.url, autocommit=True) as conn:
        schema.Store.open(conn, cfg)
    register(cfg.database_url, [("m1", "traffic", None)])
    sensor = _sensor_ids(cfg.database_url)["m1"]
    sub = Subscriber(_port(broker.url), [wt.committed(topic_prefix)])
    c = start_collector(cfg)
    pg_own.stop()
    pub = Publisher(_port(broker.url))
    pub.publish(wt.telemetry("m1", topic_prefix),
                {"ts": int(time.time() * 1000) - 5000, "values": {"speed_kmh": 12.5}})
    pub.close(sent=1)
    wait_until(lambda: c.metrics.value("citypulse_ingest_spool_bytes") > 0 and c.wait_idle(1),
               60, "the reading spooled and acked")
    assert sub.messages == []  # spooled is not committed: nothing announced yet
    pg_own.start()
    wait_until(lambda: sub.messages, 60, "the drained batch announced")
    [reading] = wc.decode(sub.messages[0][1])
    assert (reading.sensor, reading.values[1]) == (sensor, 12.5)


def test_bench_relays_every_observation():
    from bench.sta_mqtt import run

    r = run(batches=2, rows=10, slots=2, timeout=30)
    assert r["complete"] and r["received"] == r["observations"] == 40
    assert r["relay_bad_messages"] == 0
