"""The wall and /ingest tell the truth: device time never moves "now" (a device 4 minutes
fast), and the wall counts agree with upkeep alerts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dashboards import data

pytestmark = pytest.mark.postgres_path  # creates its partitions the plain-PostgreSQL way


def test_a_fast_device_clock_never_moves_now_or_the_replay_range(db):
    (sensor,) = db.execute(
        """INSERT INTO citypulse.sensors (sensor_id, kind, lon, lat)
           VALUES ('fast-1', 'noise', 121.93, 30.9) RETURNING id""").fetchone()
    real = datetime.now(UTC)
    db.execute("SELECT citypulse.ensure_raw_partitions(%s, %s)",
               (real.date() - timedelta(days=1), real.date() + timedelta(days=1)))
    db.execute("INSERT INTO citypulse.raw (time, sensor, v0) VALUES (%s, %s, 50), (%s, %s, 51)",
               (real - timedelta(seconds=20), sensor, real + timedelta(minutes=4), sensor))
    health = data.ingest_health(db, real - timedelta(minutes=30))
    assert health["lag_s"] is not None and health["lag_s"] >= 0
    assert health["ahead_readings"] == 1 and health["ahead_sensors"] == 1
    assert all(r["t"] <= datetime.now(UTC) for r in health["rate"])
    first, last = data.history_range(db)
    assert last <= datetime.now(UTC)  # the replay slider ends at the server's now
    assert first <= real - timedelta(seconds=19)


def test_wall_counts_agree_with_upkeep_and_count_incidents_only(db):
    db.execute("""INSERT INTO citypulse.sensors (sensor_id, kind, lon, lat)
                  SELECT 'n-' || i, 'noise', 121.93, 30.9 FROM generate_series(1, 5) i""")
    db.execute("INSERT INTO citypulse.sensor_status VALUES ('n-1', 'offline', now())")
    silent_zone = {"rule": "sensor_offline", "entity_kind": "zone", "entity_id": "z-1",
                   "scope": ["n-1", "n-2"], "severity": "warning"}
    jam = {"rule": "congestion", "entity_kind": "segment", "entity_id": "s-1", "scope": [],
           "severity": "warning"}
    k = data.kpis(db, alerts=[silent_zone, jam])
    assert k["sensors_total"] == 5
    assert k["sensors_online"] == 3  # n-1 (last will and alert, counted once) and n-2
    assert k["alerts"]["warning"] == 1 and k["upkeep_open"] == 1
