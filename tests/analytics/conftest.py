"""Helpers for analytics tests: register sensors and write readings straight into the store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from psycopg.types.json import Jsonb

from analytics.engine import CityModel
from citypulse.catalogue import KINDS, MAX_SLOTS
from citypulse.schema import Store


@pytest.fixture(scope="session")
def city_model():
    return CityModel()


class Feed:
    """Registers sensors and writes readings with Store.write_rows."""

    def __init__(self, conn, settings):
        self.conn = conn
        self.store = Store.open(conn, settings, migrate_now=False)
        self.ids: dict[str, int] = {}
        self.kinds: dict[str, str] = {}
        self.t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)

    def sensor(self, sensor_id, kind, lon=121.93, lat=30.90, gateway=None, **props):
        row = self.conn.execute(
            "INSERT INTO citypulse.sensors (sensor_id, kind, lon, lat, gateway_id, props) "
            "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (sensor_id, kind, lon, lat, gateway, Jsonb(props))).fetchone()
        self.ids[sensor_id] = row[0]
        self.kinds[sensor_id] = kind
        return sensor_id

    def at(self, s: float) -> datetime:
        return self.t0 + timedelta(seconds=s)

    def write(self, s: float, readings: dict[str, dict[str, float]]):
        """readings: sensor_id -> {metric: value} at t0 + s seconds."""
        rows = []
        for sid, values in readings.items():
            k = KINDS[self.kinds[sid]]
            v = [None] * MAX_SLOTS
            for m, x in values.items():
                v[k.slot_of[m]] = float(x)
            rows.append((self.at(s), self.ids[sid], None, *v))
        self.store.write_rows(self.conn, rows)


@pytest.fixture
def feed(db, settings):
    return Feed(db, settings)
