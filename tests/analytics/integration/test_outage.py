"""The worker survives a database outage: after PostgreSQL returns, alerts flow again."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import psycopg

import analytics
from analytics.worker import run
from citypulse.settings import Settings
from tests.analytics.conftest import Feed
from tests.conftest import fresh_database
from tests.support import wait_for


def _wait(pred, timeout):
    return wait_for(pred, timeout, every=0.3)


def test_worker_carries_on_after_database_restart(pg_own, broker, topic_prefix, tmp_path, caplog):
    url = fresh_database(pg_own)
    settings = Settings(database_url=url, mqtt_url=broker.url, topic_prefix=topic_prefix)
    conn = psycopg.connect(url, autocommit=True)
    feed = Feed(conn, settings)
    feed.sensor("gas-1", "gas", zone_id="Z2-01")
    feed.sensor("gas-2", "gas", zone_id="Z2-02")
    stop = threading.Event()
    ticks: list[int] = []
    worker = threading.Thread(target=run, args=(settings, stop),
                              kwargs={"on_tick": lambda e: ticks.append(1)}, daemon=True)
    worker.start()
    try:
        assert _wait(lambda: len(ticks) >= 2, 20)
        conn.close()
        pg_own.stop()
        assert _wait(lambda: "alerts: database unavailable" in caplog.text, 30)  # noticed
        pg_own.start()
        conn = psycopg.connect(url, autocommit=True)
        feed.conn = conn

        def alerted():
            feed.store.write_rows(conn, [(datetime.now(UTC), feed.ids["gas-2"], None, 50.0,
                                          1.0, *[None] * 6)])
            return [a.entity_id for a in analytics.list_alerts(conn)] == ["Z2-02"]

        assert _wait(alerted, 30)
    finally:
        stop.set()
        worker.join(15)
        conn.close()
    assert not worker.is_alive()
