"""`citypulse alerts run` as a real process: raises an alert, stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime

import requests

import analytics
from citypulse.commands import UP_SERVICES
from citypulse.stack import free_port
from tests.support import wait_for


def test_alerts_worker_process(db, db_url, broker, topic_prefix, feed):
    import citypulse.cli  # noqa: F401 - registers the stages' commands

    assert ("alerts", ["alerts", "run"]) in UP_SERVICES
    feed.sensor("gas-9", "gas", zone_id="Z2-05")
    env = {**os.environ, "CITYPULSE_DATABASE_URL": db_url, "CITYPULSE_MQTT_URL": broker.url,
           "CITYPULSE_TOPIC_PREFIX": topic_prefix}
    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "citypulse", "alerts", "run",
                          "--metrics-port", str(port)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def alerted() -> list:  # a reading a second (a gas sensor's pace) until it alerts
            feed.store.write_rows(db, [(datetime.now(UTC), feed.ids["gas-9"], None, 80.0, 9.0,
                                        *[None] * 6)])
            return analytics.list_alerts(db)
        alerts = wait_for(alerted, 30, every=1.0)
        assert [(a.rule, a.entity_id, a.zone_id) for a in alerts] == [
            ("gas_leak", "Z2-05", "Z2-05")]
        body = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'citypulse_alerts_total{what="opened"} 1.0' in body
        assert "citypulse_alerts_tick_seconds_count" in body
    finally:
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=30)
    assert p.returncode == 0, out
    assert "alerts worker" in out
