"""A tracker's reported positions as its HistoricalLocations and Locations (STA 1.1, 8.2.2-8.2.3).

Over HTTP against the app, and through frost-sta-client; every answer is compared with the
readings in the store (``conftest.track_rows``).  Ids: registry position ``sensors.id``,
track point ``(sensors.id << 42) | epoch ms``.
"""

from __future__ import annotations

from datetime import timedelta

import frost_sta_client as fsc
import pytest
import requests

from tests.standards.integration.conftest import DAY, PASSWORD, USER

pytestmark = pytest.mark.integration


def ok(http, env, path, **params) -> dict:
    r = http.get(env.url + path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def track_of(conn, sensor: int) -> list[tuple[int, object, float, float]]:
    """``(id, time, lon, lat)`` of every reading with a position, oldest first."""
    return [(sensor << 42 | int(t.timestamp() * 1000), t, lon, lat) for t, lon, lat in
            conn.execute("SELECT time, v0, v1 FROM citypulse.raw WHERE sensor = %s AND v0 "
                         "IS NOT NULL AND v1 IS NOT NULL ORDER BY time", (sensor,))]


def iso(t) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def test_the_track_is_the_historical_locations(http, sta_env, store_conn):
    trk = sta_env.tracker
    track = track_of(store_conn, trk)
    assert len(track) == sum(i % 7 != 3 for i in range(240))  # without a position: none
    reg = store_conn.execute("SELECT registered_at FROM citypulse.sensors WHERE id = %s",
                             (trk,)).fetchone()[0]
    body = ok(http, sta_env, f"/Things({trk})/HistoricalLocations",
              **{"$top": "1000", "$count": "true", "$orderby": "time asc"})
    got = [(h["@iot.id"], h["time"]) for h in body["value"]]
    # the registration (that day, 00:00), then the track, oldest first
    assert reg == DAY
    want = [(trk, iso(reg))] + [(i, iso(t)) for i, t, _lon, _lat in track]
    assert got == want and body["@iot.count"] == len(want)
    # a Thing that is no tracker keeps its one registry HistoricalLocation
    other = ok(http, sta_env, f"/Things({sta_env.day_sensor})/HistoricalLocations")
    assert [h["@iot.id"] for h in other["value"]] == [sta_env.day_sensor]


def test_current_location_is_the_latest_reported_position(http, sta_env, store_conn):
    i, _t, lon, lat = track_of(store_conn, sta_env.tracker)[-1]
    (loc,) = ok(http, sta_env, f"/Things({sta_env.tracker})/Locations")["value"]
    assert loc["@iot.id"] == i and loc["location"] == {"type": "Point", "coordinates": [lon, lat]}
    assert loc["encodingType"] == "application/geo+json"
    # no track: the registry position
    idle = sta_env.idle_tracker
    lon, lat = store_conn.execute("SELECT lon, lat FROM citypulse.sensors WHERE id = %s",
                                  (idle,)).fetchone()
    (loc,) = ok(http, sta_env, f"/Things({idle})/Locations")["value"]
    assert loc["@iot.id"] == idle and loc["location"]["coordinates"] == [lon, lat]
    # and the same through $expand, for every tracker at once
    things = ok(http, sta_env, "/Things", **{"$filter": "properties/kind eq 'logistics'",
                                              "$expand": "Locations", "$top": "1000"})["value"]
    current = {t["@iot.id"]: [x["@iot.id"] for x in t["Locations"]] for t in things}
    assert current[sta_env.tracker] == [i] and current[idle] == [idle]
    assert all(v == [k] for k, v in current.items() if k != sta_env.tracker)


def test_filter_by_thing_and_time_and_expand_latest(http, sta_env, store_conn):
    trk = sta_env.tracker
    track = track_of(store_conn, trk)
    lo = DAY + timedelta(hours=9)
    body = ok(http, sta_env, "/HistoricalLocations", **{
        "$filter": f"time ge {lo:%Y-%m-%dT%H:%M:%SZ} and Thing/@iot.id eq {trk}",
        "$orderby": "time desc", "$top": "10", "$count": "true"})
    after = [x for x in track if x[1] >= lo]
    assert [h["@iot.id"] for h in body["value"]] == [x[0] for x in after[::-1][:10]]
    assert body["@iot.count"] == len(after) and "@iot.nextLink" in body
    things = ok(http, sta_env, "/Things", **{
        "$filter": f"id eq {trk} or id eq {sta_env.idle_tracker}", "$expand":
            "HistoricalLocations($top=3;$orderby=time desc;$count=true)"})["value"]
    by_id = {t["@iot.id"]: t for t in things}
    assert [h["@iot.id"] for h in by_id[trk]["HistoricalLocations"]] == [
        x[0] for x in track[::-1][:3]]
    assert by_id[trk]["HistoricalLocations@iot.count"] == len(track) + 1
    idle = by_id[sta_env.idle_tracker]
    assert [h["@iot.id"] for h in idle["HistoricalLocations"]] == [sta_env.idle_tracker]


def test_pages_follow_next_links(http, sta_env, store_conn):
    track = track_of(store_conn, sta_env.tracker)
    url = f"{sta_env.url}/Things({sta_env.tracker})/HistoricalLocations?$top=50"
    seen = []
    while url:
        body = requests.get(url, headers=http.headers).json()
        seen += [h["@iot.id"] for h in body["value"]]
        url = body.get("@iot.nextLink")
    assert sorted(seen) == sorted([x[0] for x in track] + [sta_env.tracker])
    assert len(seen) == len(set(seen))


def test_entity_links_of_a_track_point(http, sta_env, store_conn):
    """Section 9.2: @iot.selfLink and navigation links, each followed to what it names."""
    trk = sta_env.tracker
    i, t, lon, lat = track_of(store_conn, trk)[17]
    h = ok(http, sta_env, f"/HistoricalLocations({i})")
    assert h == {"@iot.id": i, "@iot.selfLink": f"{sta_env.url}/HistoricalLocations({i})",
                 "time": iso(t),
                 "Thing@iot.navigationLink": f"{sta_env.url}/HistoricalLocations({i})/Thing",
                 "Locations@iot.navigationLink":
                     f"{sta_env.url}/HistoricalLocations({i})/Locations"}
    thing = requests.get(h["Thing@iot.navigationLink"], headers=http.headers).json()
    assert thing["@iot.id"] == trk and thing["name"] == "lgx-000000"
    (loc,) = requests.get(h["Locations@iot.navigationLink"], headers=http.headers).json()["value"]
    assert loc["@iot.id"] == i and loc["location"]["coordinates"] == [lon, lat]
    assert loc["@iot.selfLink"] == f"{sta_env.url}/Locations({i})"
    back = requests.get(loc["HistoricalLocations@iot.navigationLink"], headers=http.headers)
    assert [x["@iot.id"] for x in back.json()["value"]] == [i]
    owners = requests.get(loc["Things@iot.navigationLink"], headers=http.headers).json()
    assert [x["@iot.id"] for x in owners["value"]] == [trk]
    assert ok(http, sta_env, f"/HistoricalLocations({i})/time") == {"time": iso(t)}
    exp = ok(http, sta_env, f"/HistoricalLocations({i})", **{"$expand": "Locations,Thing"})
    assert exp["Thing"]["@iot.id"] == trk and [x["@iot.id"] for x in exp["Locations"]] == [i]
    # a key off the track by 5 s, or of a Thing with no track, names nothing
    for bad in (i + 5000, sta_env.day_sensor << 42 | (i & ((1 << 42) - 1))):
        assert http.get(f"{sta_env.url}/HistoricalLocations({bad})").status_code == 404
        assert http.get(f"{sta_env.url}/Locations({bad})").status_code == 404


def test_registry_position_keeps_its_links(http, sta_env):
    sid = sta_env.day_sensor
    h = ok(http, sta_env, f"/HistoricalLocations({sid})", **{"$expand": "Locations,Thing"})
    assert h["Thing"]["@iot.id"] == sid and [x["@iot.id"] for x in h["Locations"]] == [sid]
    loc = ok(http, sta_env, f"/Locations({sid})", **{"$expand": "Things,HistoricalLocations"})
    assert [x["@iot.id"] for x in loc["Things"]] == [sid]
    assert [x["@iot.id"] for x in loc["HistoricalLocations"]] == [sid]


def test_frost_client_follows_a_tracker_to_its_track(sta_env, store_conn):
    service = fsc.SensorThingsService(
        sta_env.url, auth_handler=fsc.AuthHandler(username=USER, password=PASSWORD))
    thing = service.things().find(sta_env.tracker)
    assert thing.name == "lgx-000000"
    hist = list(thing.get_historical_locations().query().orderby("time", "desc").top(40)
                .list())  # iterating follows @iot.nextLink
    track = track_of(store_conn, sta_env.tracker)
    track_ids = [x[0] for x in track]
    assert [h.id for h in hist if h.id != sta_env.tracker] == track_ids[::-1]
    assert hist[0].time[:23] == iso(track[-1][1])[:23]
    (current,) = thing.get_locations().query().list().entities
    assert current.id == track_ids[-1]
    assert list(current.location["coordinates"]) == [track[-1][2], track[-1][3]]
    point = service.locations().find(track_ids[100])
    assert list(point.location["coordinates"]) == [track[100][2], track[100][3]]
    (owner,) = point.get_things().query().list().entities
    assert owner.id == sta_env.tracker
