"""One seeded store and one real dashboards app serving /sta/v1.1 for the module's tests.

The store holds the seeded city (bench.seed: traffic and people readings every minute) and
one air-quality station ``air-day`` with a full UTC day of readings every 60 s yesterday,
rolled up, plus late readings written after the roll-up (their minutes are dirty), so
counts must combine the rollup and raw.  Tracker ``lgx-000000`` has a track (:func:`track_rows`:
a reading every 30 s from 08:00 to 10:00 of that day, a few without a position; registered
at 00:00); the other trackers have none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import requests
from werkzeug.security import generate_password_hash

from citypulse import apikeys
from citypulse.catalogue import MAX_SLOTS
from citypulse.schema import Store
from citypulse.settings import Settings
from tests.conftest import fresh_database

USER, PASSWORD = "sta-reader", "sta-pass-1234"
DAY = (datetime.now(UTC) - timedelta(days=1)).replace(hour=0, minute=0, second=0,
                                                      microsecond=0)
LATE = (DAY + timedelta(hours=5, minutes=3, seconds=30), DAY + timedelta(hours=5, minutes=3,
                                                                          seconds=45))


@dataclass
class StaEnv:
    url: str          # service root .../sta/v1.1
    base: str         # the app
    db: str
    key: str
    day_sensor: int   # sensors.id of air-day
    tracker: int      # sensors.id of lgx-000000, which has a track
    idle_tracker: int  # sensors.id of lgx-000001, which has none


def track_rows(sensor: int) -> list[tuple]:
    """Tracker readings (lon, lat, speed, heading, load); every 7th has no position."""
    rows = []
    for i in range(240):
        t = DAY + timedelta(hours=8, seconds=30 * i)
        lon, lat = (None, None) if i % 7 == 3 else (121.80 + i * 1e-4, 30.95 - i * 5e-5)
        rows.append((t, sensor, i, lon, lat, 40.0 + i % 9, 90.0, 12000.0)
                    + (None,) * (MAX_SLOTS - 5))
    return rows


def _day_rows(sensor: int) -> list[tuple]:
    pad = (None,) * (MAX_SLOTS - 5)
    rows = []
    for i in range(24 * 60):
        t = DAY + timedelta(minutes=i)
        # pm25 every minute, no2 only every other minute: slots differ in count
        rows.append((t, sensor, i, 10 + i % 17, 20.0, None if i % 2 else 30.0 + i % 5,
                     95.0, -80.0) + pad)
    return rows


@pytest.fixture(scope="session")
def sta_env(pg, tmp_path_factory) -> StaEnv:
    url = fresh_database(pg)
    settings = Settings(database_url=url)
    with psycopg.connect(url, autocommit=True) as conn:
        from bench.seed import seed

        seed(conn, settings, sensors=300, minutes=20, alerts=2)
        sid = conn.execute(
            "INSERT INTO citypulse.sensors (sensor_id, kind, lon, lat) VALUES "
            "('air-day', 'air', 121.93, 30.90) RETURNING id").fetchone()[0]
        store = Store.open(conn, settings, migrate_now=False)
        store.write_rows(conn, _day_rows(sid))
        store.refresh_rollups(conn, settle_s=0)
        pad = (None,) * (MAX_SLOTS - 5)
        store.write_rows(conn, [(t, sid, 0, 99.0, 21.0, 31.0, 95.0, -80.0) + pad for t in LATE])
        trk, idle = (conn.execute("SELECT id FROM citypulse.sensors WHERE sensor_id = %s",
                                  (n,)).fetchone()[0] for n in ("lgx-000000", "lgx-000001"))
        store.write_rows(conn, track_rows(trk))
        conn.execute("UPDATE citypulse.sensors SET registered_at = %s WHERE id = %s", (DAY, trk))
        _info, key = apikeys.create(conn, "sta-test", ["api:read"], created_by="test")
    d = tmp_path_factory.mktemp("sta")
    users = d / "users.yaml"
    users.write_text(f"users:\n  - name: {USER}\n    role: viewer\n    password_hash: "
                     f"'{generate_password_hash(PASSWORD)}'\n")
    app_settings = Settings(database_url=url, dashboard_secret="sta-test-secret-0123456789",
                            users_file=users, data_dir=d)
    from dashboards.app import create_app
    from dashboards.serve import serve

    served = serve(create_app(app_settings))
    yield StaEnv(served.url + "/sta/v1.1", served.url, url, key, sid, trk, idle)
    served.stop()


@pytest.fixture
def http(sta_env) -> requests.Session:
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {sta_env.key}"
    return s


@pytest.fixture
def store_conn(sta_env):
    with psycopg.connect(sta_env.db, autocommit=True) as conn:
        yield conn
