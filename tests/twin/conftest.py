"""Fixtures for the twin's tests: a store with helpers to register sensors and write readings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from citypulse.catalogue import MAX_SLOTS, kind
from citypulse.schema import Store
from citypulse.settings import Settings


class TwinDB:
    """A migrated test database: register sensors, write readings by metric name."""

    def __init__(self, conn, url: str) -> None:
        self.conn = conn
        self.settings = Settings(database_url=url)
        self.store = Store.open(conn, self.settings)
        self.kinds: dict[int, str] = {}

    def sensor(self, sensor_id: str, kind_name: str, lon: float, lat: float) -> int:
        sid = self.conn.execute(
            "INSERT INTO citypulse.sensors (sensor_id, kind, lon, lat) VALUES (%s, %s, %s, %s) "
            "RETURNING id", (sensor_id, kind_name, lon, lat)).fetchone()[0]
        self.kinds[sid] = kind_name
        return sid

    def readings(self, items) -> None:
        """items: (time, sensor id, {metric: value})."""
        rows = []
        for seq, (t, sid, values) in enumerate(items):
            k = kind(self.kinds[sid])
            slots = [None] * MAX_SLOTS
            for name, v in values.items():
                slots[k.slot_of[name]] = float(v)
            rows.append((t, sid, seq, *slots))
        self.store.write_rows(self.conn, rows)
        self.store.refresh_rollups(self.conn, settle_s=0)


@pytest.fixture
def twin_db(db, db_url) -> TwinDB:
    return TwinDB(db, db_url)


@pytest.fixture
def t0() -> datetime:
    """A whole hour two hours ago (inside the store's partitions)."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
