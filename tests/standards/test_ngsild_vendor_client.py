"""Orange's NGSI-LD client (ngsildclient, in the vendor virtualenv) against the real web app:
what it lists, gets, queries, pages and reads over time equals what the store holds."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from pyproj import Geod

from standards.ngsild.entities import TYPES, urn
from twin import state

pytestmark = pytest.mark.integration
SCRIPT = Path(__file__).parent / "ngsildclient_script.py"
RADIUS_M = 1500


def run_client(server, credential: str, calls: list) -> dict:
    """One ngsildclient session making ``calls`` (see the script); its results by name."""
    from tests.ingest.vendor import vendor_python

    out = subprocess.run([str(vendor_python()), str(SCRIPT), server.url, credential,
                          json.dumps(calls)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def store(std_db):
    """What the store holds, read by SQL and the twin (the client's answers must match)."""
    import psycopg

    with psycopg.connect(std_db, autocommit=True) as db:
        sensors = db.execute("SELECT sensor_id, lon, lat, kind FROM citypulse.sensors "
                             "ORDER BY sensor_id").fetchall()
        seg, first, last = db.execute(
            "SELECT segment_id, min(bucket), max(bucket) FROM citypulse.twin_segment_1m "
            "WHERE speed_kmh IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"
        ).fetchone()
        speeds = db.execute("SELECT bucket, greatest(speed_kmh, 0) FROM citypulse.twin_segment_1m"
                            " WHERE segment_id = %s AND speed_kmh IS NOT NULL ORDER BY bucket",
                            (seg,)).fetchall()
        return {"sensors": sensors, "segments": {r["segment_id"]: r
                                                 for r in state.segments_at(db).rows},
                "zones": {r["zone_id"]: r for r in state.zones_at(db).rows},
                "segment": seg, "window": (first + timedelta(minutes=1),
                                           last + timedelta(minutes=1)), "speeds": speeds}


@pytest.fixture(scope="module")
def answers(std_server, read_key, store):
    """Every call the tests check, made by one client session (one vendor python start)."""
    sid, lon, lat, _kind = store["sensors"][len(store["sensors"]) // 3]
    start, end = store["window"]
    seg_id = urn("TrafficFlowObserved", store["segment"])
    geo_q = {"georel": f"near;maxDistance=={RADIUS_M}", "geometry": "Point",
             "coordinates": [lon, lat]}
    calls = [
        ["n_devices", "count", {"type": "Device"}],
        ["types", "types.list", {}],
        ["devices", "query", {"type": "Device"}],
        ["traffic", "query", {"type": "TrafficFlowObserved"}],
        ["crowd", "query", {"type": "CrowdFlowObserved"}],
        ["traffic_by_7", "query", {"type": "TrafficFlowObserved", "limit": 7}],
        ["device", "get", {"entity": f"urn:ngsi-ld:Device:{sid}"}],
        # the client puts the id in the path as it is: an id with a %-escape must be escaped
        # by the caller (a URI in a path segment escapes its "%"), see docs/standard-apis.md
        ["segment", "get", {"entity": seg_id.replace("%", "%25")}],
        ["segment_unescaped", "get", {"entity": seg_id}],
        ["slow", "query", {"type": "TrafficFlowObserved", "q": "averageVehicleSpeed<20"}],
        ["n_slow", "count", {"type": "TrafficFlowObserved", "q": "averageVehicleSpeed<20"}],
        ["near", "alt.query", {"query": {"type": "Query", "entities": [{"type": "Device"}],
                                         "geoQ": geo_q}, "limit": 50}],
        ["near_get", "query", {"type": "Device", "gq": geo_q["georel"]}],
        ["troe", "temporal.query", {
            "eid": seg_id, "type": "TrafficFlowObserved", "attrs": ["averageVehicleSpeed"],
            "tq": {"timerel": "between", "timeAt": start.isoformat(),
                   "endTimeAt": end.isoformat()}}],
        # no temporal query at all (CIM 009 5.7.3 makes it optional for one entity)
        ["troe_all", "temporal.get", {"eid": seg_id.replace("%", "%25"),
                                      "attrs": ["averageVehicleSpeed"]}],
    ]
    return {**run_client(std_server, f"key:{read_key}", calls),
            "centre": (lon, lat), "sensor": sid}


def value(e: dict, attr: str):
    return e[attr]["value"]


def test_it_connects_with_an_api_key_and_with_basic(std_server, answers, store):
    assert answers["broker"] is None  # connected (it raises otherwise); vendor not guessed
    assert answers["n_devices"] == len(store["sensors"])
    assert answers["types"] == list(TYPES)  # GET /types
    basic = run_client(std_server, "basic:viewer:viewer", [["n", "count", {"type": "Device"}]])
    assert basic["n"] == len(store["sensors"])


def test_lists_every_entity_of_a_type_with_the_stored_values(answers, store):
    devices = {e["id"]: e for e in answers["devices"]}
    assert len(answers["devices"]) == len(devices) == len(store["sensors"]) > 100  # > 1 page
    for sid, lon, lat, kind in store["sensors"]:
        e = devices[f"urn:ngsi-ld:Device:{sid}"]
        assert e["type"] == "Device"
        assert value(e, "location")["coordinates"] == [lon, lat]
        assert e["refDeviceModel"]["object"] == f"urn:ngsi-ld:DeviceModel:{kind}"
    traffic = answers["traffic"]
    assert len(traffic) == len({e["id"] for e in traffic}) == len(store["segments"])
    with_speed = 0
    for e in traffic:
        row = store["segments"][e["refRoadSegment"]["object"].split(":", 3)[3]
                                .replace("%3E", ">")]
        if row["speed_kmh"] is not None:
            with_speed += 1
            assert value(e, "averageVehicleSpeed") == pytest.approx(max(0.0, row["speed_kmh"]))
    assert with_speed > len(traffic) // 2
    crowd = {e["id"].rsplit(":", 1)[1]: e for e in answers["crowd"]}
    assert len(answers["crowd"]) == len(crowd) and set(crowd) == set(store["zones"])
    for zone, row in store["zones"].items():
        assert value(crowd[zone], "name") == row["name"]
        if row["people"] is not None:
            assert value(crowd[zone], "peopleCount") == round(max(0.0, row["people"]))


def test_pages_of_seven_add_up_to_the_same_list(answers):
    assert len(answers["traffic"]) > 7 * 3
    assert [e["id"] for e in answers["traffic_by_7"]] == [e["id"] for e in answers["traffic"]]


def test_get_one_by_id(answers, store):
    sid, lon, lat, kind = next(r for r in store["sensors"] if r[0] == answers["sensor"])
    e = answers["device"]
    assert e["id"] == f"urn:ngsi-ld:Device:{sid}"
    assert value(e, "location")["coordinates"] == [lon, lat]
    seg, seg_id = answers["segment"], urn("TrafficFlowObserved", store["segment"])
    assert "%" in seg_id and seg.get("id") == seg_id, seg
    assert value(seg, "averageVehicleSpeed") == pytest.approx(
        max(0.0, store["segments"][store["segment"]]["speed_kmh"]))
    # unescaped, the server reads "%3E" as ">": that id is not ours
    assert answers["segment_unescaped"]["error"].startswith("NgsiResourceNotFoundError")


def test_q_returns_exactly_the_slow_segments(answers, store):
    slow = {urn("TrafficFlowObserved", s) for s, r in store["segments"].items()
            if r["speed_kmh"] is not None and max(0.0, r["speed_kmh"]) < 20}
    assert slow and len(slow) < len(store["segments"])
    assert {e["id"] for e in answers["slow"]} == slow
    assert answers["n_slow"] == len(slow) == len(answers["slow"])
    assert all(value(e, "averageVehicleSpeed") < 20 for e in answers["slow"])


def test_georel_returns_exactly_the_devices_near(answers, store):
    geod, (lon, lat) = Geod(ellps="WGS84"), answers["centre"]
    near = {f"urn:ngsi-ld:Device:{s}" for s, x, y, _k in store["sensors"]
            if geod.inv(lon, lat, x, y)[2] <= RADIUS_M}
    assert 50 < len(near) < len(store["sensors"])  # more than one page of 50
    assert {e["id"] for e in answers["near"]} == near  # POST /entityOperations/query
    assert len(answers["near"]) == len(near)
    for e in answers["near"][:20]:
        x, y = value(e, "location")["coordinates"]
        assert geod.inv(lon, lat, x, y)[2] <= RADIUS_M
    # the client's own GET form sends geoQ=..., which GET /entities does not take: refused,
    # never answered with every device
    assert answers["near_get"]["error"].startswith("NgsiBadRequestDataError"), answers["near_get"]
    assert "geoQ" in answers["near_get"]["error"]


def test_temporal_query_returns_the_stored_minutes(answers, store):
    troe, speeds = answers["troe"][0], store["speeds"]
    assert len(answers["troe"]) == 1
    assert troe["id"] == urn("TrafficFlowObserved", store["segment"])
    got = troe["averageVehicleSpeed"]["values"]  # the client asks for temporalValues
    assert len(got) == len(speeds) - 1 >= 5  # the window leaves out the last minute
    # no temporal query: every stored minute that has ended (the seed's last may not have)
    every_minute = answers["troe_all"]["averageVehicleSpeed"]["values"]
    assert len(speeds) - 1 <= len(every_minute) <= len(speeds)
    for series in (got, every_minute):
        for (v, t), (bucket, speed) in zip(series, speeds[:len(series)], strict=True):
            assert v == pytest.approx(speed)
            assert t.startswith((bucket + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M"))
