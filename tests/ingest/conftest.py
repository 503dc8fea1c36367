"""Helpers for ingest tests: registering sensors, a QoS 1 publisher, waiting, seq accounting."""

from __future__ import annotations

import threading
import time
import uuid

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest

from citypulse.wire import topics as wt
from ingest import registry
from ingest.collector import Collector
from tests.support import wait_for


def register(db_url: str, sensors: list[tuple[str, str, str | None]]) -> None:
    """Register ``(sensor_id, kind, gateway_id)`` sensors."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        registry.upsert(conn, [registry.SensorRecord(s, k, 121.93, 30.9, g, "{}")
                               for s, k, g in sensors])


def wait_until(fn, timeout=30.0, every=0.1):
    return wait_for(fn, timeout, every)


class Publisher:
    """A QoS 1 MQTT 5 publisher with a persistent session (survives broker restarts)."""

    def __init__(self, url_port: int, client_id: str | None = None) -> None:
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                             client_id=client_id or "pub-" + uuid.uuid4().hex[:8],
                             protocol=mqtt.MQTTv5)
        self.c.max_inflight_messages_set(100)
        self.c.reconnect_delay_set(0.1, 1)
        self.acked = 0
        self._lock = threading.Lock()

        def on_publish(*_a):
            with self._lock:
                self.acked += 1

        self.c.on_publish = on_publish
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.c.connect("127.0.0.1", url_port, clean_start=False, properties=props)
        self.c.loop_start()
        wait_until(self.c.is_connected, 10)

    def publish(self, topic: str, doc, qos: int = 1, retain: bool = False,
                content_type: str | None = None) -> None:
        data = doc if isinstance(doc, bytes) else orjson.dumps(doc)
        props = None
        if content_type:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties
            props = Properties(PacketTypes.PUBLISH)
            props.ContentType = content_type
        self.c.publish(topic, data, qos=qos, retain=retain, properties=props)

    def close(self, sent: int | None = None) -> None:
        if sent is not None:
            wait_until(lambda: self.acked >= sent, 60)
        self.c.disconnect()
        self.c.loop_stop()


def stream(pub: Publisher, prefix: str, sensors: list[str], n: int, rate: float,
           start_ms: int, stop: threading.Event | None = None) -> int:
    """Publish ``n`` readings per sensor (seq 0..n-1, ts = start_ms + 10*seq) at ``rate`` msg/s."""
    sent = 0
    t0 = time.monotonic()
    for seq in range(n):
        for s in sensors:
            pub.publish(wt.telemetry(s, prefix),
                        {"ts": start_ms + 10 * seq, "seq": seq, "values": {"speed_kmh": seq % 200}})
            sent += 1
            ahead = sent / rate - (time.monotonic() - t0)
            if ahead > 0:  # the load's pace (devices send on a clock), not a wait for anything
                time.sleep(ahead)
        if stop is not None and stop.is_set():
            break
    return sent


def seq_counts(db_url: str, prefix: str) -> dict[tuple[str, int], int]:
    """(sensor_id, seq) -> number of stored rows, for sensors whose id starts with ``prefix``."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT s.sensor_id, r.seq, count(*) FROM citypulse.raw r JOIN citypulse.sensors s "
            "ON s.id = r.sensor WHERE s.sensor_id LIKE %s GROUP BY 1, 2", (prefix + "%",)).fetchall()
    return {(s, q): n for s, q, n in rows}


def assert_exactly_once(db_url: str, prefix: str, sensors: list[str], n: int) -> None:
    counts = seq_counts(db_url, prefix)
    expected = {(s, q) for s in sensors for q in range(n)}
    missing = expected - set(counts)
    assert not missing, f"{len(missing)} readings lost, e.g. {sorted(missing)[:5]}"
    assert set(counts) == expected
    dups = {k: v for k, v in counts.items() if v != 1}
    assert not dups, f"stored more than once: {list(dups.items())[:5]}"


@pytest.fixture
def start_collector():
    """Start in-process collectors; they are stopped (and checked for internal errors) after."""
    started: list[Collector] = []

    def _start(settings, client_id=None) -> Collector:
        c = Collector(settings, client_id=client_id or "c-" + uuid.uuid4().hex[:8])
        c.start()
        # connected is set on the SUBACK: the subscriptions are in place
        assert wait_until(lambda: c.metrics.value("citypulse_ingest_mqtt_connected") == 1, 20)
        started.append(c)
        return c

    yield _start
    for c in started:
        c.stop(10)
    for c in started:
        assert c.metrics.value("citypulse_ingest_internal_errors_total") == 0
