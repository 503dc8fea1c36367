"""Alerts reach an MQTT subscriber and local webhook receivers; failing webhooks are retried."""

from __future__ import annotations

import json
import queue
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import paho.mqtt.client as mqtt
import pytest

from analytics.delivery import Delivery
from analytics.engine import Engine
from analytics.rules import load_rules
from citypulse.stack import free_port
from citypulse.wire import topics
from tests.support import wait_for


class Receiver:
    """A real HTTP server on 127.0.0.1 that answers the first ``fail`` POSTs with 500."""

    def __init__(self, fail: int = 0):
        self.bodies: list[dict] = []
        self.attempts = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.attempts += 1
                if outer.attempts <= fail:
                    self.send_response(500)
                else:
                    outer.bodies.append(json.loads(body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def subscriber(broker, topic_prefix):
    got: queue.Queue = queue.Queue()
    ready = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.on_connect = lambda cl, *a: cl.subscribe(f"{topic_prefix}/v1/alerts/#", qos=1)
    c.on_subscribe = lambda *a: ready.set()
    c.on_message = lambda cl, u, m: got.put((m.topic, m.qos, json.loads(m.payload)))
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    assert ready.wait(10)
    yield got
    c.loop_stop()
    c.disconnect()


def _wait(pred, timeout=10.0):
    return bool(wait_for(pred, timeout))


def test_alert_on_mqtt_and_webhooks_with_retries(db, feed, settings, subscriber, city_model,
                                                  topic_prefix):
    ok, flaky = Receiver(), Receiver(fail=2)
    dead_url = f"http://127.0.0.1:{free_port()}/nobody"
    delivery = Delivery(settings, webhook_urls=[ok.url, flaky.url, dead_url], max_attempts=3,
                        backoff_s=0.05, backoff_cap_s=0.2, timeout_s=2)
    try:
        assert delivery.wait_connected(10)
        feed.sensor("fir-7", "fire", 121.95, 30.91, zone_id="Z2-01")
        eng = Engine(db, load_rules(), delivery, city=city_model)
        feed.write(0, {"fir-7": {"smoke_pct": 15, "temperature_c": 75, "alarm": 1}})
        eng.tick(feed.at(1))
        topic, qos, msg = subscriber.get(timeout=10)
        assert topic == topics.alert("critical", "Z2-01", topic_prefix)
        assert qos == 1
        assert msg["rule"] == "fire" and msg["event"] == "open"
        assert msg["entity"] == {"kind": "sensor", "id": "fir-7"}
        assert msg["severity"] == "critical" and msg["status"] == "open"
        assert msg["place"]["geometry"] == {"type": "Point", "coordinates": [121.95, 30.91]}
        assert msg["evidence"]["alarm"] == 1 and msg["started"]
        # every webhook done (the counters follow the delivery log)
        assert _wait(lambda: delivery.stats["webhook_ok"] == 2
                     and delivery.stats["webhook_failed"] == 1)
        assert ok.bodies[0]["id"] == msg["id"] and ok.attempts == 1
        assert flaky.attempts == 3 and flaky.bodies[0]["id"] == msg["id"]
        rows = db.execute("SELECT target, status, attempts, last_error FROM "
                          "citypulse.alert_deliveries ORDER BY id").fetchall()
        assert [(r[0], r[1], r[2]) for r in rows] == [
            (ok.url, "ok", 1), (flaky.url, "ok", 3), (dead_url, "failed", 3)]
        assert "Connection" in rows[2][3]
        assert delivery.stats["webhook_retries"] == 4
    finally:
        delivery.close()
        ok.close()
        flaky.close()


def test_worker_publishes_a_new_alert_within_seconds(db, feed, settings, subscriber):
    from datetime import UTC, datetime

    from analytics.worker import run

    feed.sensor("gas-3", "gas", zone_id="Z3-07")
    stop = threading.Event()
    ticks = []
    worker = threading.Thread(target=run, args=(settings, stop),
                              kwargs={"on_tick": lambda e: ticks.append(e.stats["ticks"])},
                              daemon=True)
    worker.start()
    try:
        assert _wait(lambda: len(ticks) >= 2, 20)
        now = datetime.now(UTC)
        feed.store.write_rows(db, [(now, feed.ids["gas-3"], None, 45.0, 3.0, *[None] * 6)])
        topic, _, msg = subscriber.get(timeout=10)  # a deadline; latency: citypulse bench alerts
        assert topic.endswith("/alerts/critical/Z3-07")
        assert msg["rule"] == "gas_leak" and msg["entity"] == {"kind": "zone", "id": "Z3-07"}
        assert msg["scope"] == ["gas-3"]  # one alert per leak (zone), its detectors as scope
    finally:
        stop.set()
        worker.join(10)
    assert not worker.is_alive()
