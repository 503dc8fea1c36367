"""Trackers' tracks (SensorThings Locations/HistoricalLocations) for sharing recipients.

A tracker's reported lon/lat are its position: a recipient sees the track exactly where its
scenario delivers ``readings.logistics`` lon and lat raw (sharing.access); coarsened
(``round_coords``) or pseudonymised, the track is absent, like every other position.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import requests

from citypulse.catalogue import MAX_SLOTS
from citypulse.schema import Store
from citypulse.settings import Settings
from tests.sharing.conftest import serve_recipients

FLEET_RAW = """title: raw truck positions
purpose: fleet routing research with raw positions
recipients: [{name: fleet-lab}]
destination: domestic
datasets:
  readings.logistics:
    fields:
      time:
      sensor_id:
      lon:
      lat:
      speed_kmh:
"""
FLEET_COARSE = FLEET_RAW.replace("fleet-lab", "coarse-lab").replace(
    "lon:", "lon: {round_coords: {decimals: 2}}").replace(
    "lat:", "lat: {round_coords: {decimals: 2}}")
STA = "/sta/v1.1"
DAY = (datetime.now(UTC) - timedelta(days=1)).replace(hour=6, minute=0, second=0,
                                                      microsecond=0)


@pytest.fixture(scope="module")
def env(share_db, share_data_dir, tmp_path_factory):
    with psycopg.connect(share_db, autocommit=True) as conn:
        trk = conn.execute("SELECT id FROM citypulse.sensors WHERE kind = 'logistics' "
                           "ORDER BY id LIMIT 1").fetchone()[0]
        rows = [(DAY + timedelta(minutes=i), trk, i, 121.9 + i / 1e3, 30.9 + i / 1e3, 50.0,
                 90.0, 1000.0) + (None,) * (MAX_SLOTS - 5) for i in range(30)]
        Store.open(conn, Settings(database_url=share_db), migrate_now=False).write_rows(
            conn, rows)
    served, keys = serve_recipients(
        share_db, share_data_dir, tmp_path_factory.mktemp("std-tracks"),
        {"fleet_raw": FLEET_RAW, "fleet_coarse": FLEET_COARSE},
        {"fleet-lab": ["share:fleet_raw"], "coarse-lab": ["share:fleet_coarse"],
         "sg-port-logistics": ["share:port_logistics_sg"]})
    yield served.url, keys, trk
    served.stop()
    with psycopg.connect(share_db, autocommit=True) as conn:
        conn.execute("DELETE FROM citypulse.raw WHERE sensor = %s AND time >= %s AND time < %s",
                     (trk, DAY, DAY + timedelta(minutes=30)))


def _get(env, who: str, path: str, **params) -> requests.Response:
    url, keys, _trk = env
    r = requests.get(url + STA + path, params=params, timeout=60,
                     headers={"Authorization": f"Bearer {keys[who]}"})
    return r


def _ok(env, who: str, path: str, **params) -> dict:
    r = _get(env, who, path, **params)
    assert r.status_code == 200, r.text
    return r.json()


def test_raw_positions_show_the_track(env, share_conn):
    trk = env[2]
    track = [(trk << 42 | int(t.timestamp() * 1000), lon, lat) for t, lon, lat in
             share_conn.execute("SELECT time, v0, v1 FROM citypulse.raw WHERE sensor = %s "
                                "AND v0 IS NOT NULL ORDER BY time", (trk,))]
    assert len(track) == 30
    body = _ok(env, "fleet-lab", f"/Things({trk})/HistoricalLocations",
               **{"$top": "1000", "$count": "true"})
    # by time: the track (yesterday), then the registration (the seed's, today)
    assert [h["@iot.id"] for h in body["value"]] == [x[0] for x in track] + [trk]
    (loc,) = _ok(env, "fleet-lab", f"/Things({trk})/Locations")["value"]
    assert loc["@iot.id"] == track[-1][0]
    assert loc["location"]["coordinates"] == [track[-1][1], track[-1][2]]
    # the Locations it sees are trackers' only: each registry position plus this track
    trackers = share_conn.execute("SELECT count(*) FROM citypulse.sensors WHERE "
                                  "kind = 'logistics'").fetchone()[0]
    every = _ok(env, "fleet-lab", "/Locations", **{"$count": "true", "$top": "0"})
    assert every["@iot.count"] == trackers + len(track)


def test_coarsened_or_pseudonymised_positions_hide_the_track(env):
    trk = env[2]
    key = _ok(env, "fleet-lab", f"/Things({trk})/Locations")["value"][0]["@iot.id"]
    # coarse-lab sees the truck and its speed, never where it is
    assert _ok(env, "coarse-lab", f"/Things({trk})")["name"].startswith("lgx-")
    for path in (f"/Things({trk})/Locations", f"/Things({trk})/HistoricalLocations",
                 "/Locations", "/HistoricalLocations"):
        body = _ok(env, "coarse-lab", path, **{"$count": "true"})
        assert body["value"] == [] and body["@iot.count"] == 0, path
    for path in (f"/HistoricalLocations({key})", f"/Locations({key})", f"/Locations({trk})"):
        assert _get(env, "coarse-lab", path).status_code == 404, path
    t = _ok(env, "coarse-lab", f"/Things({trk})",
            **{"$expand": "Locations,HistoricalLocations,Datastreams"})
    assert t["Locations"] == [] and t["HistoricalLocations"] == []
    assert [d["properties"]["metric"] for d in t["Datastreams"]] == ["speed_kmh"]
    # the port partner pseudonymises sensor ids: no tracker at all
    assert _get(env, "sg-port-logistics", f"/Things({trk})").status_code == 404
    assert _get(env, "sg-port-logistics", f"/HistoricalLocations({key})").status_code == 404
