"""Rows the C pass encoded for COPY are stored exactly as their tuples say, on a real database."""

from __future__ import annotations

import time

import orjson
import pytest

from citypulse import schema
from citypulse.settings import Settings
from citypulse.wire.topics import Topic
from ingest import fastdecode
from ingest.registry import Registered
from ingest.validate import Window

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(fastdecode.native is None, reason="ingest._fastrows not built")]
REG = {"tr-1": Registered(1, "traffic", "gw"), "tr-2": Registered(2, "traffic", "gw")}
NOW = int(time.time() * 1000) - 300_000
WINDOW = Window.around(NOW + 300_000, 30, 60)
SELECT = "SELECT time, sensor, seq, v0, v1, v2, v3, v4, v5, v6, v7 FROM citypulse.raw ORDER BY 2, 1"


@pytest.fixture
def store(db, db_url):
    db.execute("INSERT INTO citypulse.sensors (sensor_id, kind, lon, lat) VALUES "
               "('tr-1', 'traffic', 121.93, 30.90), ('tr-2', 'traffic', 121.92, 30.89)")
    return schema.Store.open(db, Settings(database_url=db_url), migrate_now=False)


def _encoded(doc: dict) -> tuple[list[tuple], bytes]:
    copy = bytearray()
    rows = fastdecode.rows(orjson.dumps(doc), Topic("gateway", "gw"), NOW, None, REG, WINDOW,
                           {}, copy)
    assert rows and copy  # the C pass took it
    return rows, bytes(copy)


def _doc(first: int, n: int, **values) -> dict:
    return {"tr-1": [{"ts": NOW + i, "seq": i, "values": values or {"speed_kmh": i / 8}}
                     for i in range(first, first + n)],
            "tr-2": [{"ts": NOW + i, "values": {"vehicle_count": i, "occupancy_pct": 0.5}}
                     for i in range(first, first + n)]}


def test_encoded_rows_store_what_the_tuples_say(db, store):
    rows, data = _encoded(_doc(0, 50))
    assert store.write_batch(db, rows, encoded=(data, len(rows))) == schema.WriteResult(100, 0, 0)
    assert db.execute(SELECT).fetchall() == sorted(rows, key=lambda r: (r[1], r[0]))


def test_an_encoded_prefix_then_plain_rows(db, store):
    rows, data = _encoded(_doc(0, 5))
    more, _ = _encoded(_doc(100, 3))
    assert store.write_batch(db, rows + more, encoded=(data, len(rows))).inserted == 16
    assert db.execute(SELECT).fetchall() == sorted(rows + more, key=lambda r: (r[1], r[0]))


def test_a_redelivery_stops_the_encoded_copy_and_is_merged(db, store):
    rows, data = _encoded(_doc(0, 5))
    store.write_batch(db, rows, encoded=(data, len(rows)))
    again, data2 = _encoded(_doc(3, 4, speed_kmh=99.0, vehicle_count=1.0))
    res = store.write_batch(db, again, encoded=(data2, len(again)))
    # readings 3 and 4 of tr-1 gain vehicle_count; their speed stays; 5 and 6 are new
    assert (res.inserted, res.merged) == (4, 2)
    got = db.execute(SELECT).fetchall()
    speed, count = (fastdecode._ROW_LIMITS["traffic"][m][0] for m in ("speed_kmh", "vehicle_count"))
    assert [(r[2], r[speed], r[count]) for r in got if r[1] == 1 and r[2] >= 3] == [
        (3, 3 / 8, 1.0), (4, 4 / 8, 1.0), (5, 99.0, 1.0), (6, 99.0, 1.0)]
