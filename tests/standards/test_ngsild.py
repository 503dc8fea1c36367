"""NGSI-LD over the real web app: entities validate against the Smart Data Models schemas,
values match the twin, the store and the registry, geo-queries return exactly the entities in
the area, query options and errors behave as ETSI GS CIM 009 says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import shapely
from jsonschema import Draft202012Validator
from pyproj import Geod
from referencing import Registry, Resource
from shapely import wkt
from shapely.geometry import Point, shape

from twin import state

pytestmark = pytest.mark.integration
SCHEMAS = Path(__file__).resolve().parents[2] / "standards" / "ngsild" / "data" / "schemas"
API = "/ngsi-ld/v1"
TYPES = ("TrafficFlowObserved", "CrowdFlowObserved", "Alert", "Device", "DeviceModel")


def get(session, server, path, params=None, accept="application/json", status=200):
    r = session.get(server.url + API + path, params=params, headers={"Accept": accept},
                    timeout=60)
    assert r.status_code == status, r.text[:500]
    return r


def every(session, server, params) -> list[dict]:
    """All entities of a query, following limit/offset paging."""
    out, offset = [], 0
    while True:
        page = get(session, server, "/entities",
                   {**params, "limit": 1000, "offset": offset}).json()
        out += page
        if len(page) < 1000:
            return out
        offset += 1000


@pytest.fixture(scope="module")
def validators() -> dict[str, Draft202012Validator]:
    docs = [json.loads(p.read_text()) for p in SCHEMAS.glob("*.json")]
    registry = Registry().with_resources(
        (d["$id"], Resource.from_contents(d)) for d in docs)
    return {t: Draft202012Validator(json.loads((SCHEMAS / f"{t}.json").read_text()),
                                    registry=registry,
                                    format_checker=Draft202012Validator.FORMAT_CHECKER)
            for t in TYPES}


@pytest.mark.parametrize("entity_type", TYPES)
def test_entities_validate_against_smart_data_models(std_server, viewer, validators,
                                                     entity_type):
    found = every(viewer, std_server, {"type": entity_type, "options": "keyValues"})
    assert found, f"no {entity_type} served"
    for e in found:
        errors = [f"{'/'.join(map(str, x.path))}: {x.message}"
                  for x in validators[entity_type].iter_errors(e)]
        assert not errors, (e["id"], errors)
    # a wrong entity is refused by the same validator (the check can fail)
    broken = {k: v for k, v in found[0].items() if k != "id"}
    assert list(validators[entity_type].iter_errors(broken))
    broken = {**found[0], "type": "Elephant"}
    assert list(validators[entity_type].iter_errors(broken))


def test_normalized_form_and_context(std_server, viewer):
    r = get(viewer, std_server, "/entities", {"type": "TrafficFlowObserved", "limit": 3},
            accept="application/ld+json")
    assert r.headers["Content-Type"].startswith("application/ld+json")
    for e in r.json():
        assert e["@context"].endswith("/ngsi-ld/v1/contexts/citypulse.jsonld")
        assert e["location"]["type"] == "GeoProperty"
        assert e["refRoadSegment"]["type"] == "Relationship"
        assert e["refRoadSegment"]["object"].startswith("urn:ngsi-ld:RoadSegment:")
        assert e["dateObservedTo"]["value"]["@type"] == "DateTime"
    plain = get(viewer, std_server, "/entities", {"type": "DeviceModel", "limit": 1})
    link = plain.headers["Link"]
    assert 'rel="http://www.w3.org/ns/json-ld#context"' in link
    ctx_url = link[1:link.index(">")]
    ctx = viewer.get(ctx_url, timeout=30).json()["@context"]
    assert len(ctx) == 4 and ctx[-1].endswith("ngsi-ld-core-context-v1.7.jsonld")
    for url in ctx:  # every context is served here (nothing fetched from the web)
        assert url.startswith(std_server.url)
        doc = viewer.get(url, timeout=30).json()["@context"]
        assert doc
    core = viewer.get(ctx[-1], timeout=30).json()["@context"]
    assert core["GeoProperty"] == "ngsi-ld:GeoProperty"
    transport = viewer.get(ctx[0], timeout=30).json()["@context"]
    assert "averageVehicleSpeed" in transport and "peopleCount" in transport


def test_values_match_the_twin(std_server, viewer, db):
    segs = {r["segment_id"]: r for r in state.segments_at(db).rows}
    zones = {r["zone_id"]: r for r in state.zones_at(db).rows}
    traffic = every(viewer, std_server, {"type": "TrafficFlowObserved", "options": "keyValues"})
    crowd = every(viewer, std_server, {"type": "CrowdFlowObserved", "options": "keyValues"})
    assert len(traffic) == len(segs) and len(crowd) == len(zones)
    with_speed = 0
    for e in traffic:
        row = segs[e["refRoadSegment"].split(":", 3)[3].replace("%3E", ">")]
        assert e["name"] == row["road"]
        if row["speed_kmh"] is None:
            assert "averageVehicleSpeed" not in e
            continue
        with_speed += 1
        assert e["averageVehicleSpeed"] == pytest.approx(max(0.0, row["speed_kmh"]))
        assert e["occupancy"] == pytest.approx(min(1, max(0, row["occupancy_pct"] / 100)))
        assert e["congestionIndex"] == pytest.approx(row["congestion"])
        assert e["vehicleFlowPerHour"] == pytest.approx(row["flow_veh_h"])
    assert with_speed > len(segs) // 2
    for e in crowd:
        row = zones[e["id"].rsplit(":", 1)[1]]
        if row["people"] is not None:
            assert e["peopleCount"] == round(max(0.0, row["people"]))
        assert e["name"] == row["name"]
    n_sensors, = db.execute("SELECT count(*) FROM citypulse.sensors").fetchone()
    r = get(viewer, std_server, "/entities", {"type": "Device", "count": "true", "limit": 0})
    assert int(r.headers["NGSILD-Results-Count"]) == n_sensors and r.json() == []
    sid, lon, lat, kind = db.execute(
        "SELECT sensor_id, lon, lat, kind FROM citypulse.sensors ORDER BY id LIMIT 1").fetchone()
    one = get(viewer, std_server, f"/entities/urn:ngsi-ld:Device:{sid}",
              {"options": "keyValues"}).json()
    assert one["location"]["coordinates"] == [lon, lat]
    assert one["refDeviceModel"] == f"urn:ngsi-ld:DeviceModel:{kind}"
    alerts = db.execute("SELECT id, severity FROM citypulse.alerts WHERE status <> 'resolved'"
                        ).fetchall()
    served = every(viewer, std_server, {"type": "Alert", "options": "keyValues"})
    assert sorted(e["id"] for e in served) == sorted(f"urn:ngsi-ld:Alert:{i}" for i, _ in alerts)


def test_near_returns_exactly_the_devices_within_the_distance(std_server, viewer, db):
    geod = Geod(ellps="WGS84")
    rows = db.execute("SELECT sensor_id, lon, lat FROM citypulse.sensors "
                      "ORDER BY sensor_id").fetchall()
    _sid, lon, lat = rows[len(rows) // 3]  # a place where sensors are
    for radius in (400, 1500):
        inside = {f"urn:ngsi-ld:Device:{s}" for s, x, y in rows
                  if geod.inv(lon, lat, x, y)[2] <= radius}
        found = every(viewer, std_server, {
            "type": "Device", "georel": f"near;maxDistance=={radius}", "geometry": "Point",
            "coordinates": json.dumps([lon, lat]), "attrs": "location"})
        assert inside and {e["id"] for e in found} == inside
        outside = every(viewer, std_server, {
            "type": "Device", "georel": f"near;minDistance=={radius}", "geometry": "Point",
            "coordinates": json.dumps([lon, lat]), "attrs": "location"})
        assert len(outside) + len(inside) == len(rows)
        assert not {e["id"] for e in outside} & inside


def test_within_and_intersects_return_exactly_the_entities_in_the_area(std_server, viewer, db):
    x0, y0, x1, y1 = db.execute("SELECT min(lon), min(lat), max(lon), max(lat) "
                                "FROM citypulse.sensors").fetchone()
    # the south-west quarter of the city, as a polygon
    mx, my = (x0 + x1) / 2, (y0 + y1) / 2
    area = shapely.box(x0 - 0.001, y0 - 0.001, mx, my)
    coords = json.dumps([list(map(list, area.exterior.coords))])
    zones = {z: wkt.loads(g) for z, g in db.execute(
        "SELECT zone_id, geom_wkt FROM citypulse.twin_zones")}
    segs = {s: wkt.loads(g) for s, g in db.execute(
        "SELECT segment_id, geom_wkt FROM citypulse.twin_segments")}
    want_zones = {z for z, g in zones.items() if g.within(area)}
    want_segs = {s for s, g in segs.items() if g.intersects(area)}
    got = every(viewer, std_server, {"type": "CrowdFlowObserved", "georel": "within",
                                     "geometry": "Polygon", "coordinates": coords,
                                     "options": "keyValues"})
    assert {e["id"].rsplit(":", 1)[1] for e in got} == want_zones
    got = every(viewer, std_server, {"type": "TrafficFlowObserved", "georel": "intersects",
                                     "geometry": "Polygon", "coordinates": coords,
                                     "options": "keyValues"})
    assert want_segs and len(want_segs) < len(segs)
    assert {e["refRoadSegment"].split(":", 3)[3].replace("%3E", ">") for e in got} == want_segs
    devices = {f"urn:ngsi-ld:Device:{s}" for s, x, y in db.execute(
        "SELECT sensor_id, lon, lat FROM citypulse.sensors") if Point(x, y).within(area)}
    got = every(viewer, std_server, {"type": "Device", "georel": "within",
                                     "geometry": "Polygon", "coordinates": coords})
    assert devices and {e["id"] for e in got} == devices
    for e in got[:20]:
        assert shape(e["location"]["value"]).within(area)


def test_query_options(std_server, viewer):
    params = {"type": "TrafficFlowObserved", "options": "keyValues"}
    everything = every(viewer, std_server, params)
    slow = [e for e in everything if e.get("averageVehicleSpeed", 1e9) < 20]
    got = every(viewer, std_server, {**params, "q": "averageVehicleSpeed<20"})
    assert [e["id"] for e in got] == [e["id"] for e in slow]
    both = every(viewer, std_server, {**params, "q": "averageVehicleSpeed<20;congested==true"})
    assert {e["id"] for e in both} == {e["id"] for e in slow if e.get("congested")}
    either = every(viewer, std_server,
                   {**params, "q": "(averageVehicleSpeed<20|occupancy>0.5);intensity>=0"})
    assert {e["id"] for e in either} == {
        e["id"] for e in everything if "intensity" in e and (
            e.get("averageVehicleSpeed", 1e9) < 20 or e.get("occupancy", 0) > 0.5)}
    # paging: pages are disjoint, ordered, and add up to the count
    r = get(viewer, std_server, "/entities", {**params, "limit": 7, "offset": 7,
                                              "count": "true"})
    assert int(r.headers["NGSILD-Results-Count"]) == len(everything)
    assert [e["id"] for e in r.json()] == [e["id"] for e in everything[7:14]]
    # attrs projects, id selects, idPattern matches
    r = get(viewer, std_server, "/entities", {**params, "attrs": "averageVehicleSpeed",
                                              "limit": 5}).json()
    assert all(set(e) <= {"id", "type", "averageVehicleSpeed"} for e in r)
    ids = [everything[0]["id"], everything[3]["id"]]
    r = get(viewer, std_server, "/entities", {"id": ",".join(ids)}).json()
    assert sorted(e["id"] for e in r) == sorted(ids)
    r = every(viewer, std_server, {"type": "DeviceModel", "idPattern": "(air|noise)$"})
    assert {e["id"] for e in r} == {"urn:ngsi-ld:DeviceModel:air",
                                    "urn:ngsi-ld:DeviceModel:noise"}
    r = every(viewer, std_server, {"type": "Device", "q": 'controlledProperty=="noiseLevel"',
                                   "options": "keyValues"})
    assert r and all("noiseLevel" in e["controlledProperty"] for e in r)
    geo = get(viewer, std_server, "/entities", {"type": "CrowdFlowObserved", "limit": 2},
              accept="application/geo+json").json()
    assert geo["type"] == "FeatureCollection" and geo["features"][0]["geometry"]["type"]


@pytest.mark.parametrize(("params", "fragment"), [
    ({}, "at least one of"),
    ({"type": "Device", "q": "speed>>3"}, "q:"),
    ({"type": "Device", "q": "(a==1"}, "q:"),
    ({"type": "Device", "q": 'name=="open'}, "unterminated"),
    ({"type": "Device", "georel": "near", "geometry": "Point", "coordinates": "[1,2]"},
     "maxDistance"),
    ({"type": "Device", "georel": "within", "geometry": "Polygon", "coordinates": "[1,2]"},
     "coordinates"),
    ({"type": "Device", "georel": "inside", "geometry": "Point", "coordinates": "[1,2]"},
     "georel"),
    ({"type": "Device", "georel": "within"}, "geometry and coordinates"),
    ({"type": "Device", "limit": "-1"}, "limit"),
    ({"type": "Device", "limit": "5000"}, "limit"),
    ({"type": "Device", "limit": "0"}, "count=true"),
    ({"type": "Device", "idPattern": "("}, "idPattern"),
    ({"type": "Device", "options": "fancy"}, "options"),
])
def test_bad_queries_answer_problem_details(std_server, viewer, params, fragment):
    r = get(viewer, std_server, "/entities", params, status=400)
    body = r.json()
    assert body["type"] == "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"
    assert fragment in body["detail"]


def test_missing_entities_unknown_paths_writes_and_accept(std_server, viewer):
    for path in ("/entities/urn:ngsi-ld:Device:no-such-device",
                 "/entities/urn:ngsi-ld:Elephant:1", "/nothing-here",
                 "/contexts/other.jsonld"):
        body = get(viewer, std_server, path, status=404).json()
        assert body["type"] == "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound"
    r = viewer.post(std_server.url + API + "/entities", json={"id": "urn:x", "type": "T"},
                    headers={"Origin": std_server.url}, timeout=30)
    assert r.status_code == 405
    assert r.json()["type"].endswith("/OperationNotSupported")
    r = get(viewer, std_server, "/entities", {"type": "Device"}, accept="text/csv", status=406)
    assert r.json()["type"].endswith("/NotAcceptable")


def test_access_needs_a_credential(std_server, read_key):
    import requests

    url = std_server.url + API + "/entities?type=DeviceModel"
    assert requests.get(url, timeout=30).status_code == 401
    assert requests.get(url, headers={"X-API-Key": "wrong"}, timeout=30).status_code == 401
    r = requests.get(url, headers={"Authorization": f"Bearer {read_key}"}, timeout=30)
    assert r.status_code == 200 and len(r.json()) == 12


def test_temporal_values_come_from_the_twin_rollup(std_server, viewer, db):
    seg, first, last = db.execute(
        "SELECT segment_id, min(bucket), max(bucket) FROM citypulse.twin_segment_1m "
        "WHERE speed_kmh IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1").fetchone()
    rows = db.execute("SELECT bucket, speed_kmh FROM citypulse.twin_segment_1m "
                      "WHERE segment_id = %s AND speed_kmh IS NOT NULL AND bucket >= %s "
                      "AND bucket < %s ORDER BY bucket", (seg, first, last)).fetchall()
    from datetime import timedelta

    from standards.ngsild.entities import urn

    eid = urn("TrafficFlowObserved", seg)
    params = {"timerel": "between", "timeAt": (first + timedelta(minutes=1)).isoformat(),
              "endTimeAt": (last + timedelta(minutes=1)).isoformat(),
              "attrs": "averageVehicleSpeed"}
    r = get(viewer, std_server, f"/temporal/entities/{eid.replace('%', '%25')}", params).json()
    inst = r["averageVehicleSpeed"]
    assert len(inst) == len(rows) >= 5
    for i, (bucket, speed) in zip(inst, rows, strict=True):
        assert i["value"] == pytest.approx(max(0.0, speed))
        assert i["observedAt"].startswith((bucket + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M"))
    r = get(viewer, std_server, "/temporal/entities",
            {**params, "type": "TrafficFlowObserved", "lastN": 3,
             "options": "temporalValues", "id": eid}).json()
    assert [v for v, _t in r[0]["averageVehicleSpeed"]["values"]] == pytest.approx(
        [max(0.0, s) for _b, s in rows[-3:]])
    bad = get(viewer, std_server, "/temporal/entities",
              {"type": "TrafficFlowObserved", "timerel": "between",
               "timeAt": "2026-01-10T00:00:00Z", "endTimeAt": "2026-01-01T00:00:00Z"},
              status=400).json()
    assert bad["type"].endswith("/BadRequestData") and "endTimeAt" in bad["detail"]
    get(viewer, std_server, "/temporal/entities", {"type": "TrafficFlowObserved"}, status=400)
    # one entity's temporal query is optional (CIM 009 5.7.3): then the last 7 days, all the
    # stored minutes that have ended (the seed's last one may not have yet)
    r = get(viewer, std_server, f"/temporal/entities/{eid.replace('%', '%25')}",
            {"attrs": "averageVehicleSpeed"}).json()
    assert len(rows) <= len(r["averageVehicleSpeed"]) <= len(rows) + 1
    assert [i["value"] for i in r["averageVehicleSpeed"][:len(rows)]] == pytest.approx(
        [max(0.0, s) for _b, s in rows])



def test_query_by_post_answers_like_get(std_server, read_key, db):
    """POST /entityOperations/query (ETSI GS CIM 009 6.23): a Query body, GET's answers."""
    import requests

    client = requests.Session()
    client.headers["X-API-Key"] = read_key  # a machine client: no session, no Origin
    lon, lat = db.execute("SELECT lon, lat FROM citypulse.sensors ORDER BY sensor_id "
                          "LIMIT 1 OFFSET 500").fetchone()
    q = 'controlledProperty=="noiseLevel"|controlledProperty=="trafficFlow"'
    body = {"type": "Query", "entities": [{"type": "Device"}], "q": q,
            "attrs": ["location", "controlledProperty"],
            "geoQ": {"georel": "near;maxDistance==1500", "geometry": "Point",
                     "coordinates": [lon, lat]}}
    params = {"type": "Device", "q": q, "attrs": "location,controlledProperty",
              "georel": "near;maxDistance==1500", "geometry": "Point",
              "coordinates": json.dumps([lon, lat]), "options": "keyValues"}

    def post(b, status=200, **url):
        r = client.post(std_server.url + API + "/entityOperations/query", json=b, params=url,
                        timeout=60)
        assert r.status_code == status, r.text[:500]
        return r.json(), r.headers

    by_get = every(client, std_server, params)
    by_post, headers = post(body, limit=1000, count="true", options="keyValues")
    n_devices, = db.execute("SELECT count(*) FROM citypulse.sensors").fetchone()
    assert 5 < len(by_post) < n_devices and by_post == by_get
    assert headers["NGSILD-Results-Count"] == str(len(by_get))
    normalized, _ = post(body, limit=3, offset=3)
    assert [e["id"] for e in normalized] == [e["id"] for e in by_get[3:6]]
    assert normalized[0]["location"] == {"type": "GeoProperty", "value": by_get[3]["location"]}
    # several selectors (types), one selector with an id
    got, _ = post({"type": "Query", "entities": [{"type": "DeviceModel"}, {"type": "Alert"}]},
                  limit=1000)
    assert sorted(e["id"] for e in got) == sorted(
        e["id"] for e in every(client, std_server, {"type": "DeviceModel,Alert"}))
    one = {"type": "Query", "entities": [{"type": got[0]["type"], "id": got[0]["id"]}]}
    assert [e["id"] for e in post(one)[0]] == [got[0]["id"]]
    # a GET with the Query body's geoQ is refused, not answered with every entity
    r = get(client, std_server, "/entities", {"type": "Device", "geoQ": "near;maxDistance==9"},
            status=400).json()
    assert r["type"].endswith("/BadRequestData") and "geoQ" in r["detail"]
    assert requests.post(std_server.url + API + "/entityOperations/query", json=one,
                         timeout=30).status_code == 401


@pytest.mark.parametrize(("body", "fragment"), [
    ("not json", "body"),
    ({"entities": [{"type": "Device"}]}, "body"),
    ({"type": "Query"}, "at least one of"),
    ({"type": "Query", "entities": [{"type": "Device"}], "temporalQ": {}}, "temporalQ"),
    ({"type": "Query", "entities": [{"type": "Device", "id": "urn:x:1"}, {"type": "Alert"}]},
     "several selectors"),
    ({"type": "Query", "entities": [{"type": 3}]}, "entities"),
    ({"type": "Query", "entities": [{"type": "Device"}], "attrs": "location"}, "attrs"),
    ({"type": "Query", "entities": [{"type": "Device"}], "q": "speed>>3"}, "q:"),
    ({"type": "Query", "entities": [{"type": "Device"}], "geoQ": {"georel": "within"}},
     "geometry and coordinates"),
    ({"type": "Query", "entities": [{"type": "Device"}], "geoQ": {"georel": "near",
                                                                   "where": "here"}}, "geoQ"),
])
def test_bad_post_queries_answer_problem_details(std_server, read_key, body, fragment):
    import requests

    r = requests.post(std_server.url + API + "/entityOperations/query",
                      data=body if isinstance(body, str) else json.dumps(body),
                      headers={"X-API-Key": read_key, "Content-Type": "application/json"},
                      timeout=30)
    assert r.status_code == 400, r.text[:300]
    assert r.json()["type"] == "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"
    assert fragment in r.json()["detail"]
