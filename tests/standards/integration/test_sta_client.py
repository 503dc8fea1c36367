"""SensorThings through a real client (frost-sta-client, FROST's Python client) against the app.

Counts and values are checked against the store itself (citypulse.raw, citypulse.sensors).
"""

from __future__ import annotations

from datetime import timedelta

import frost_sta_client as fsc
import pytest

from tests.standards.integration.conftest import DAY, LATE, PASSWORD, USER

pytestmark = pytest.mark.integration


@pytest.fixture
def service(sta_env):
    auth = fsc.AuthHandler(username=USER, password=PASSWORD)
    return fsc.SensorThingsService(sta_env.url, auth_handler=auth)


def test_lists_every_thing_of_the_registry(service, store_conn):
    things = list(service.things().query().top(100).list())  # follows @iot.nextLink
    ids = [t.id for t in things]
    stored = [r[0] for r in store_conn.execute("SELECT id FROM citypulse.sensors ORDER BY id")]
    assert ids == stored
    names = dict(store_conn.execute("SELECT id, sensor_id FROM citypulse.sensors"))
    assert all(t.name == names[t.id] for t in things)


def test_thing_to_datastreams_to_observations(service, sta_env, store_conn):
    thing = service.things().find(sta_env.day_sensor)
    assert thing.name == "air-day"
    streams = list(service.datastreams().query().filter(
        f"Thing/@iot.id eq {sta_env.day_sensor}").list())
    # air: pm25, pm10, no2 + battery, rssi -> five datastreams, id = sensor * 8 + slot
    assert sorted(d.id for d in streams) == [sta_env.day_sensor * 8 + k for k in range(5)]
    pm25 = next(d for d in streams if d.name.endswith("pm25_ugm3"))
    assert pm25.unit_of_measurement.symbol == "ug/m3"
    obs = list(service.observations().query().filter(
        f"Datastream/@iot.id eq {pm25.id}").orderby("phenomenonTime", "desc").top(5).list()
        .entities)
    stored = store_conn.execute(
        "SELECT time, v0 FROM citypulse.raw WHERE sensor = %s ORDER BY time DESC LIMIT 5",
        (sta_env.day_sensor,)).fetchall()
    assert [o.result for o in obs] == [v for _t, v in stored]
    assert [o.phenomenon_time[:19] for o in obs] == [
        t.strftime("%Y-%m-%dT%H:%M:%S") for t, _v in stored]


def test_pages_through_a_day_of_observations(service, sta_env, store_conn):
    ds = sta_env.day_sensor * 8 + 2  # no2: every other minute, plus the late readings
    lo, hi = DAY, DAY + timedelta(days=1)
    q = service.observations().query().filter(
        f"Datastream/@iot.id eq {ds} and phenomenonTime ge {lo:%Y-%m-%dT%H:%M:%SZ} and "
        f"phenomenonTime lt {hi:%Y-%m-%dT%H:%M:%SZ}").orderby("phenomenonTime", "asc").count()
    page = q.top(200).list()
    got = list(page)  # iterating loads every next page
    stored = store_conn.execute(
        "SELECT time, v2 FROM citypulse.raw WHERE sensor = %s AND v2 IS NOT NULL AND "
        "time >= %s AND time < %s ORDER BY time", (sta_env.day_sensor, lo, hi)).fetchall()
    assert len(stored) == 720 + len(LATE)
    assert page.count == len(stored)
    assert [o.result for o in got] == [v for _t, v in stored]


def test_filter_and_expand(service, sta_env, store_conn):
    things = service.things().query().filter("properties/kind eq 'air'").expand(
        "Datastreams($filter=endswith(name, 'pm25_ugm3');$expand=Observations("
        "$top=1;$orderby=phenomenonTime desc))").list().entities
    stored = store_conn.execute("SELECT id FROM citypulse.sensors WHERE kind = 'air' "
                                "ORDER BY id").fetchall()
    assert [t.id for t in things] == [r[0] for r in stored]
    day = next(t for t in things if t.id == sta_env.day_sensor)
    (ds,) = day.datastreams.entities
    (latest,) = ds.observations.entities
    last = store_conn.execute("SELECT max(time) FROM citypulse.raw WHERE sensor = %s AND "
                              "v0 IS NOT NULL", (sta_env.day_sensor,)).fetchone()[0]
    assert latest.phenomenon_time[:19] == last.strftime("%Y-%m-%dT%H:%M:%S")
