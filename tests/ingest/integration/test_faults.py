"""Faults under load with seq accounting: every reading sent is stored exactly once."""

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import psycopg

from citypulse import schema
from citypulse.settings import Settings
from citypulse.stack import free_port
from tests.ingest.conftest import Publisher, assert_exactly_once, register, stream, wait_until
from tests.support import stays_false

N_SENSORS = 10


def _sensors(tag):
    return [f"{tag}{i:03d}" for i in range(N_SENSORS)]


def _port(url):
    return int(url.rsplit(":", 1)[1])


def _stored(db_url, tag):
    with psycopg.connect(db_url, autocommit=True) as conn:
        return conn.execute("SELECT count(DISTINCT (r.sensor, r.seq)) FROM citypulse.raw r JOIN citypulse.sensors s "
                            "ON s.id = r.sensor WHERE s.sensor_id LIKE %s", (tag + "%",)).fetchone()[0]


def _background(pub, prefix, sensors, n, rate):
    result = {}
    start_ms = int(time.time() * 1000) - 60_000
    t = threading.Thread(target=lambda: result.setdefault("sent", stream(pub, prefix, sensors, n, rate, start_ms)))
    t.start()
    return t, result


def _scrape(port):
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return ""


def _spawn_collector(settings, client_id, port):
    env = dict(os.environ, CITYPULSE_DATABASE_URL=settings.database_url, CITYPULSE_MQTT_URL=settings.mqtt_url,
               CITYPULSE_TOPIC_PREFIX=settings.topic_prefix, CITYPULSE_SPOOL_DIR=str(settings.spool_dir),
               CITYPULSE_BATCH_MAX_MS="50", CITYPULSE_DEVICE_RATE_LIMIT="100000")
    proc = subprocess.Popen([sys.executable, "-m", "citypulse", "ingest", "--client-id", client_id,
                             "--metrics-port", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)

    assert wait_until(lambda: "citypulse_ingest_mqtt_connected 1.0" in _scrape(port), 30), \
        "collector did not come up"  # subscribed (SUBACK)
    return proc


def test_collector_sigkilled_mid_stream_and_restarted(settings, broker):
    sensors = _sensors("k")
    register(settings.database_url, [(s, "traffic", None) for s in sensors])
    port = free_port()
    proc = _spawn_collector(settings, "kill-me", port)
    pub = Publisher(_port(broker.url))
    n = 200
    t, result = _background(pub, settings.topic_prefix, sensors, n, 500)
    try:
        assert wait_until(lambda: _stored(settings.database_url, "k") > 300, 20)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        acked = pub.acked  # the broker keeps taking load for the dead collector's session
        assert wait_until(lambda: pub.acked > acked + 50, 20)
        proc = _spawn_collector(settings, "kill-me", port)
        t.join(60)
        pub.close(sent=result["sent"])
        assert result["sent"] == n * N_SENSORS
        assert wait_until(lambda: _stored(settings.database_url, "k") == n * N_SENSORS, 30)
        # redeliveries of what was stored before the kill: received and settled
        assert wait_until(lambda: "citypulse_ingest_queue_messages 0.0" in _scrape(port), 30)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0  # SIGTERM flushes and exits cleanly
    assert_exactly_once(settings.database_url, "k", sensors, n)


def test_database_stopped_mid_stream(pg_own, broker, topic_prefix, tmp_path, start_collector):
    cfg = Settings(database_url=pg_own.url, mqtt_url=broker.url, topic_prefix=topic_prefix,
                   spool_dir=tmp_path / "spool", batch_max_ms=50, device_rate_limit=1e5)
    with psycopg.connect(pg_own.url, autocommit=True) as conn:
        schema.Store.open(conn, cfg)
    sensors = _sensors("d")
    register(cfg.database_url, [(s, "traffic", None) for s in sensors])
    c = start_collector(cfg)
    pub = Publisher(_port(broker.url))
    n = 400
    t, result = _background(pub, topic_prefix, sensors, n, 300)
    assert wait_until(lambda: _stored(cfg.database_url, "d") > 300, 20)  # the load flows
    pg_own.stop()
    # the outage lasts until the collector has bridged it with its spool
    wait_until(lambda: c.metrics.value("citypulse_ingest_spool_bytes") > 0, 60)
    spooled = c.metrics.value("citypulse_ingest_spool_bytes")
    pg_own.start()
    t.join(60)
    pub.close(sent=result["sent"])
    assert wait_until(lambda: _stored(cfg.database_url, "d") == n * N_SENSORS, 40)
    assert c.wait_idle(20)
    assert spooled > 0, "the outage should have been bridged by the spool"
    assert wait_until(lambda: c.metrics.value("citypulse_ingest_spool_bytes") == 0, 10)
    assert c.metrics.value("citypulse_ingest_db_errors_total", kind="temporary") > 0
    assert_exactly_once(cfg.database_url, "d", sensors, n)


def test_broker_restarted_mid_stream(broker_own, settings, start_collector):
    cfg = settings.model_copy(update={"mqtt_url": broker_own.url, "batch_max_ms": 50, "device_rate_limit": 1e5})
    sensors = _sensors("b")
    register(cfg.database_url, [(s, "traffic", None) for s in sensors])
    c = start_collector(cfg)
    pub = Publisher(_port(broker_own.url), client_id="restart-pub")
    n = 300
    t, result = _background(pub, cfg.topic_prefix, sensors, n, 500)
    assert wait_until(lambda: _stored(cfg.database_url, "b") > 500, 20)
    broker_own.stop()
    assert wait_until(lambda: c.metrics.value("citypulse_ingest_mqtt_connected") == 0
                      and not pub.c.is_connected(), 20), "the broker's clients did not notice"
    broker_own.start()
    t.join(60)
    pub.close(sent=result["sent"])
    assert wait_until(lambda: _stored(cfg.database_url, "b") == n * N_SENSORS, 40)
    assert c.wait_idle(20)
    assert_exactly_once(cfg.database_url, "b", sensors, n)


def test_two_collectors_share_the_load(settings, broker, start_collector):
    cfg = settings.model_copy(update={"share_group": "grp", "batch_max_ms": 50, "device_rate_limit": 1e5})
    sensors = _sensors("s")
    register(cfg.database_url, [(s, "traffic", None) for s in sensors])
    a = start_collector(cfg, client_id="share-a")
    b = start_collector(cfg, client_id="share-b")
    pub = Publisher(_port(broker.url))
    n = 150
    sent = stream(pub, cfg.topic_prefix, sensors, n, 1000, int(time.time() * 1000) - 60_000)
    pub.close(sent=sent)
    assert wait_until(lambda: _stored(cfg.database_url, "s") == n * N_SENSORS, 30)
    assert a.wait_idle(10) and b.wait_idle(10)
    got = [x.metrics.value("citypulse_ingest_messages_total", kind="telemetry",
                             source="native") for x in (a, b)]
    assert sum(got) == n * N_SENSORS
    assert min(got) > 0.2 * sum(got), f"load not split: {got}"
    assert_exactly_once(cfg.database_url, "s", sensors, n)


def test_full_spool_stops_acking_and_loses_nothing(pg_own, broker, topic_prefix, tmp_path, start_collector):
    cfg = Settings(database_url=pg_own.url, mqtt_url=broker.url, topic_prefix=topic_prefix,
                   spool_dir=tmp_path / "spool", spool_max_bytes=0, batch_max_ms=50,
                   device_rate_limit=1e5, max_inflight_messages=100)
    with psycopg.connect(pg_own.url, autocommit=True) as conn:
        schema.Store.open(conn, cfg)
    sensors = _sensors("f")
    register(cfg.database_url, [(s, "traffic", None) for s in sensors])
    c = start_collector(cfg)
    pg_own.stop()
    pub = Publisher(_port(broker.url))
    n = 50
    sent = stream(pub, topic_prefix, sensors, n, 1000, int(time.time() * 1000) - 60_000)
    # nothing acknowledged beyond the receive maximum: the broker holds the rest
    assert wait_until(lambda: c._pending >= 100, 30), c._pending
    assert stays_false(lambda: c._pending > 100, within=1.0), c._pending
    assert c.metrics.value("citypulse_ingest_spool_bytes") == 0
    assert c.metrics.value("citypulse_ingest_readings_stored_total") == 0
    pg_own.start()
    pub.close(sent=sent)
    assert wait_until(lambda: _stored(cfg.database_url, "f") == n * N_SENSORS, 40)
    assert c.wait_idle(20)
    assert_exactly_once(cfg.database_url, "f", sensors, n)


def test_collector_restarted_during_database_outage(pg_own, broker, topic_prefix, tmp_path, start_collector,
                                                   caplog):
    cfg = Settings(database_url=pg_own.url, mqtt_url=broker.url, topic_prefix=topic_prefix,
                   spool_dir=tmp_path / "spool", batch_max_ms=50, device_rate_limit=1e5)
    with psycopg.connect(pg_own.url, autocommit=True) as conn:
        schema.Store.open(conn, cfg)
    sensors = _sensors("r")
    register(cfg.database_url, [(s, "traffic", None) for s in sensors])
    first = start_collector(cfg, client_id="restart-during-outage")
    first.stop(10)  # the persistent session stays at the broker
    pg_own.stop()
    pub = Publisher(_port(broker.url))
    n = 40
    sent = stream(pub, topic_prefix, sensors, n, 1000, int(time.time() * 1000) - 60_000)
    pub.close(sent=sent)
    from ingest.collector import Collector

    second = Collector(cfg, client_id="restart-during-outage")
    starter = threading.Thread(target=second.start, daemon=True)
    starter.start()  # waits for the database before it takes messages
    try:
        assert wait_until(lambda: caplog.text.count("event=db_unreachable") >= 2, 30)
        assert starter.is_alive(), "start() should wait for the database"
        pg_own.start()
        starter.join(30)
        assert not starter.is_alive()
        assert wait_until(lambda: _stored(cfg.database_url, "r") == n * N_SENSORS, 30)
        assert second.wait_idle(10)
    finally:
        second._stopping.set()  # ends any wait for the database
        if not pg_own.running:
            pg_own.start()
        starter.join(10)
        second.stop(10)
    assert second.metrics.value("citypulse_ingest_internal_errors_total") == 0
    assert_exactly_once(cfg.database_url, "r", sensors, n)
