"""The twin's HTTP endpoints and worker command against real PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import flask
import pytest
from psycopg_pool import ConnectionPool
from typer.testing import CliRunner

from citypulse.cli import app as cli_app
from citypulse.commands import UP_SERVICES
from twin import build_city
from twin.api import create_blueprint, parse_time
from twin.placement import place_sensors

SEG = "N1.00>N2.00"


@pytest.fixture
def client(twin_db, db_url, t0):
    city = build_city()
    sid = twin_db.sensor("tr-x", "traffic", *city.point_along(SEG, 0.5))
    place_sensors(twin_db.conn, city)
    twin_db.readings([(t0 + i * timedelta(seconds=10), sid,
                       {"vehicle_count": 3, "speed_kmh": 30, "occupancy_pct": 12})
                      for i in range(6)])
    res = CliRunner().invoke(cli_app, ["twin", "run", "--once", "--database-url", db_url])
    assert res.exit_code == 0, res.output
    pool = ConnectionPool(db_url, min_size=1, max_size=2, kwargs={"autocommit": True},
                          open=True)
    app = flask.Flask("t")
    app.register_blueprint(create_blueprint(pool=pool))
    yield app.test_client()
    pool.close()


def test_segments_json_and_geojson(client, t0):
    at = (t0 + timedelta(minutes=2)).isoformat()
    r = client.get("/api/twin/segments", query_string={"at": at})
    assert r.status_code == 200
    rows = {x["segment_id"]: x for x in r.get_json()["rows"]}
    assert rows[SEG]["flow_veh_h"] == pytest.approx(3 * 6 * 60)
    assert rows[SEG]["speed_kmh"] == pytest.approx(30)
    assert rows[SEG]["congestion"] == pytest.approx(0.5)  # radial, free flow 60 km/h
    g = client.get("/api/twin/segments", query_string={"at": at, "format": "geojson"})
    fc = g.get_json()
    assert fc["type"] == "FeatureCollection"
    f = next(f for f in fc["features"] if f["id"] == SEG)
    assert f["geometry"]["type"] == "LineString"
    assert f["properties"]["speed_kmh"] == pytest.approx(30)
    # epoch milliseconds work too; before the data there is none
    ms = int((t0 - timedelta(hours=1)).timestamp() * 1000)
    early = client.get("/api/twin/segments", query_string={"at": str(ms)}).get_json()
    assert early["bucket"] is None


def test_zones_od_city_and_errors(client, t0):
    z = client.get("/api/twin/zones", query_string={"format": "geojson"}).get_json()
    assert len(z["features"]) == len(build_city().zones)
    assert z["features"][0]["geometry"]["type"] == "Polygon"
    od = client.get("/api/twin/od", query_string={"hour": t0.isoformat()}).get_json()
    assert od["total"] == 0 and od["rows"] == []
    city = client.get("/api/twin/city.geojson")
    assert city.mimetype == "application/geo+json"
    layers = {f["properties"]["layer"] for f in city.get_json()["features"]}
    assert layers == {"lake", "zone", "road_segment", "node", "gate"}
    assert client.get("/api/twin/segments?at=yesterday").status_code == 400
    assert client.get("/api/twin/zones?window=0").status_code == 400
    pl = client.get("/api/twin/placement").get_json()
    assert pl["counts"] == [{"placement": "segment", "status": "placed", "sensors": 1}]
    assert pl["unplaceable"] == []
    lag = client.get("/api/twin/lag").get_json()
    assert 0 <= lag["lag_s"] < 120


def test_parse_time_and_up_service():
    assert parse_time("2026-01-02T03:04:05Z").utcoffset() == timedelta(0)
    assert parse_time("1764000000123").year == 2025
    assert parse_time(None) is None
    with pytest.raises(ValueError):
        parse_time("not a time")
    assert ("twin", ["twin", "run"]) in UP_SERVICES
