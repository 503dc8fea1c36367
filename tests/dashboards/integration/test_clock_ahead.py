"""A device whose clock runs 4 minutes fast never moves "now": not the /ingest lag, not the
readings-per-second chart, not the /replay range."""

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
