"""A device 4 minutes fast, through a real broker and collector: its readings are stored at
their arrival time (the original kept as a 'restamped' dead letter), or rejected by the
dead_letter policy; "now", the replay range and the lag never follow its clock; its clock
becomes a maintenance ticket with the skew estimate."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import orjson
import psycopg
import pytest

from analytics import upkeep
from citypulse.wire import payload as wp
from citypulse.wire import topics as wt
from dashboards import data
from tests.ingest.conftest import Publisher, register, wait_until

FAST_MS = 240_000


@pytest.mark.parametrize("policy", ["restamp", "dead_letter"])
def test_a_device_four_minutes_fast(settings, broker, start_collector, policy):
    cfg = settings.model_copy(update={"batch_max_ms": 50, "metrics_port": 0,
                                      "clock_ahead_policy": policy})
    register(cfg.database_url, [("fast-1", "noise", None), ("ok-1", "noise", None)])
    c = start_collector(cfg)
    pub = Publisher(int(broker.url.rsplit(":", 1)[1]))
    sent = int(time.time() * 1000)
    for i in range(3):
        pub.publish(wt.telemetry("fast-1", cfg.topic_prefix),
                    {"ts": sent + FAST_MS + i * 1000, "seq": i, "values": {"laeq_db": 50 + i}})
    pub.publish(wt.telemetry("ok-1", cfg.topic_prefix),
                {"ts": sent, "seq": 1, "values": {"laeq_db": 40}})
    pub.close(sent=4)
    with psycopg.connect(cfg.database_url, autocommit=True) as conn:
        def dead():
            return conn.execute("SELECT reason, payload, detail FROM citypulse.dead_letters "
                                "WHERE sensor_id = 'fast-1'").fetchall()

        assert wait_until(lambda: len(dead()) == 3, 15)
        assert c.wait_idle(10)
        stored = conn.execute(
            """SELECT r.time FROM citypulse.raw r JOIN citypulse.sensors s ON s.id = r.sensor
               WHERE s.sensor_id = 'fast-1'""").fetchall()
        received = datetime.now(UTC)
        if policy == "restamp":
            assert {r for r, _p, _d in dead()} == {wp.RESTAMPED}
            assert len(stored) >= 1  # at arrival time (readings of one batch merge)
            assert all(t <= received for (t,) in stored)
            # the originals are kept, with the device's own times
            assert sorted(orjson.loads(p)["ts"] for _r, p, _d in dead()) == [
                sent + FAST_MS + i * 1000 for i in range(3)]
        else:
            assert {r for r, _p, _d in dead()} == {wp.CLOCK_AHEAD} and stored == []
        assert all("ahead by 2" in d for _r, _p, d in dead())  # ~240 s
        first, last = data.history_range(conn)
        assert last <= datetime.now(UTC)
        health = data.ingest_health(conn, received - timedelta(minutes=5))
        assert health["lag_s"] is not None and health["lag_s"] >= 0
        assert health["ahead_readings"] == 0  # nothing stored in the future
        upkeep.run(conn)
        (ticket,) = [t for t in upkeep.open_tickets(conn) if t["device"] == "fast-1"]
        assert ticket["problems"] == "clock_ahead" and '"skew_s":2' in ticket["evidence"]
    assert c.metrics.value("citypulse_ingest_arrival_to_commit_seconds_count") >= 1
