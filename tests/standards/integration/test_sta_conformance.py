"""Conformance cases from the SensorThings 1.1 text (sections 9.2-9.3, 14.3), malformed ones too.

Each case queries the running app over HTTP and compares with the store.
"""

from __future__ import annotations

import psycopg
import pytest
import requests

from tests.standards.integration.conftest import DAY, LATE, PASSWORD, USER

pytestmark = pytest.mark.integration


def get(http, env, path, **params):
    r = http.get(env.url + path, params=params)
    return r


def ok(http, env, path, **params) -> dict:
    r = get(http, env, path, **params)
    assert r.status_code == 200, r.text
    return r.json()


def test_service_root_lists_entity_sets(http, sta_env):
    body = ok(http, sta_env, "")
    assert {v["name"] for v in body["value"]} == {
        "Things", "Locations", "HistoricalLocations", "Sensors", "ObservedProperties",
        "Datastreams", "Observations", "FeaturesOfInterest"}
    assert any("request-data" in c for c in body["serverSettings"]["conformance"])


def test_entity_links_and_ids(http, sta_env):
    sid = sta_env.day_sensor
    t = ok(http, sta_env, f"/Things({sid})")
    assert t["@iot.id"] == sid
    assert t["@iot.selfLink"] == f"{sta_env.url}/Things({sid})"
    assert t["Datastreams@iot.navigationLink"] == f"{sta_env.url}/Things({sid})/Datastreams"
    # following every navigation link answers 200
    for key in [k for k in t if k.endswith("@iot.navigationLink")]:
        assert requests.get(t[key], headers=http.headers).status_code == 200
    assert ok(http, sta_env, f"/Things({sid})/name") == {"name": "air-day"}
    r = get(http, sta_env, f"/Things({sid})/name/$value")
    assert r.status_code == 200 and r.text == "air-day"
    ds = ok(http, sta_env, f"/Datastreams({sid * 8})/Thing")
    assert ds["@iot.id"] == sid
    sensor = ok(http, sta_env, f"/Datastreams({sid * 8})/Sensor")
    assert sensor["name"] == "air"
    op = ok(http, sta_env, f"/Datastreams({sid * 8})/ObservedProperty")
    assert op["name"] == "pm25_ugm3"
    loc = ok(http, sta_env, f"/Things({sid})/Locations")["value"][0]
    assert loc["location"] == {"type": "Point", "coordinates": [121.93, 30.90]}


def test_missing_entities_are_404(http, sta_env):
    for path in ["/Things(999999)", "/Datastreams(7999999)", "/Observations(1)",
                 "/FeaturesOfInterest('nowhere')", "/Nothing", "/Things(1)/Nothing",
                 "/Things(1)/Datastreams(9999999)", "/Things/Datastreams"]:
        r = get(http, sta_env, path)
        assert r.status_code == 404, path
        assert r.json()["type"] == "error" and r.json()["message"]


@pytest.mark.parametrize("name,value", [
    ("$top", "-1"), ("$top", "x"), ("$top", "100000"), ("$skip", "1.5"), ("$count", "yes"),
    ("$filter", "name eq"), ("$filter", "name eq 'unterminated"), ("$filter", "(name eq 'a'"),
    ("$filter", "nosuch eq 1"), ("$filter", "name eq 1"), ("$filter", "frobnicate(name)"),
    ("$filter", "st_within(name, geography'POINT(1 2)')"),
    ("$filter", "st_within(location, geography'POLYGON((1 2, 3')"),
    ("$orderby", "name sideways"), ("$orderby", "nosuch"), ("$select", "name,,id"),
    ("$select", "nosuch"), ("$expand", "Datastreams($select=nosuch)"),
    ("$expand", "Nothing"), ("$expand", "Datastreams($top=x)"), ("$expand", "Datastreams(($"),
    ("$resultFormat", "csv"), ("$bogus", "1"),
])
def test_malformed_options_are_400(http, sta_env, name, value):
    r = get(http, sta_env, "/Things", **{name: value})
    assert r.status_code == 400, (name, value, r.text)
    assert r.json()["code"] == 400 and r.json()["message"]


def test_top_skip_count_and_next_link(http, sta_env, store_conn):
    n = store_conn.execute("SELECT count(*) FROM citypulse.sensors").fetchone()[0]
    body = ok(http, sta_env, "/Things", **{"$top": "7", "$skip": "3", "$count": "true"})
    assert body["@iot.count"] == n
    ids = [t["@iot.id"] for t in body["value"]]
    all_ids = [r[0] for r in store_conn.execute("SELECT id FROM citypulse.sensors ORDER BY id")]
    assert ids == all_ids[3:10]
    nxt = requests.get(body["@iot.nextLink"], headers=http.headers).json()
    assert [t["@iot.id"] for t in nxt["value"]] == all_ids[10:17]
    last = ok(http, sta_env, "/Things", **{"$skip": str(n - 2)})
    assert len(last["value"]) == 2 and "@iot.nextLink" not in last
    assert ok(http, sta_env, "/Things", **{"$top": "0", "$count": "true"}) == {
        "@iot.count": n, "value": []}


def test_select_and_orderby(http, sta_env, store_conn):
    body = ok(http, sta_env, "/Things", **{"$select": "id,name", "$orderby": "name desc",
                                           "$top": "5"})
    names = [r[0] for r in store_conn.execute(
        "SELECT sensor_id FROM citypulse.sensors ORDER BY sensor_id DESC LIMIT 5")]
    assert [t["name"] for t in body["value"]] == names
    assert all(set(t) == {"@iot.id", "name"} for t in body["value"])


@pytest.mark.parametrize("flt,sql", [
    ("name eq 'air-day'", "sensor_id = 'air-day'"),
    ("name ne 'air-day' and properties/kind eq 'air'", "sensor_id <> 'air-day' AND kind = 'air'"),
    ("properties/kind eq 'air' or properties/kind eq 'noise'", "kind IN ('air', 'noise')"),
    ("not (id lt 100)", "id >= 100"),
    ("id mod 50 eq 0", "id % 50 = 0"),
    ("id add 1 mul 2 gt 300 sub 10 div 2", "id + 2 > 295"),
    ("substringof('ppl', name)", "sensor_id LIKE '%ppl%'"),
    ("startswith(name, 'trf-00001')", "sensor_id LIKE 'trf-00001%'"),
    ("endswith(name, '-day')", "sensor_id LIKE '%-day'"),
    ("length(name) eq 7", "length(sensor_id) = 7"),
    ("tolower(toupper(name)) eq 'air-day'", "sensor_id = 'air-day'"),
    ("indexof(name, '-') eq 3", "strpos(sensor_id, '-') = 4"),
    ("substring(name, 4) eq 'day'", "substr(sensor_id, 5) = 'day'"),
    ("concat(name, 'x') eq 'air-dayx'", "sensor_id = 'air-day'"),
    ("trim(name) eq name", "true"),
])
def test_filter_functions_on_things(http, sta_env, store_conn, flt, sql):
    body = ok(http, sta_env, "/Things", **{"$filter": flt, "$top": "10000"})
    want = [r[0] for r in store_conn.execute(
        f"SELECT id FROM citypulse.sensors WHERE {sql} ORDER BY id")]
    assert [t["@iot.id"] for t in body["value"]] == want
    assert want  # every case selects something


def test_time_functions_and_arithmetic_on_observations(http, sta_env, store_conn):
    ds = sta_env.day_sensor * 8
    flt = (f"Datastream/@iot.id eq {ds} and hour(phenomenonTime) eq 5 and "
           f"minute(phenomenonTime) lt 10 and year(phenomenonTime) eq {DAY.year} and "
           f"result mul 2 ge 40 and phenomenonTime lt now() sub duration'PT1H'")
    body = ok(http, sta_env, "/Observations", **{"$filter": flt, "$top": "1000"})
    want = store_conn.execute(
        "SELECT v0 FROM citypulse.raw WHERE sensor = %s AND extract(hour FROM time AT TIME "
        "ZONE 'UTC') = 5 AND extract(minute FROM time AT TIME ZONE 'UTC') < 10 AND "
        "v0 * 2 >= 40 ORDER BY time", (sta_env.day_sensor,)).fetchall()
    assert [o["result"] for o in body["value"]] == [r[0] for r in want]
    assert want


def test_geo_functions(http, sta_env, store_conn):
    poly = "POLYGON((121.92 30.89, 121.94 30.89, 121.94 30.91, 121.92 30.91, 121.92 30.89))"
    body = ok(http, sta_env, "/Locations", **{
        "$filter": f"st_within(location, geography'{poly}')", "$top": "10000"})
    want = [r[0] for r in store_conn.execute(
        "SELECT id FROM citypulse.sensors WHERE lon > 121.92 AND lon < 121.94 AND "
        "lat > 30.89 AND lat < 30.91 ORDER BY id")]
    assert [x["@iot.id"] for x in body["value"]] == want and sta_env.day_sensor in want
    near = ok(http, sta_env, "/Locations", **{
        "$filter": "geo.distance(location, geography'POINT(121.93 30.90)') lt 0.0001"})
    assert [x["@iot.id"] for x in near["value"]] == [sta_env.day_sensor]
    same = ok(http, sta_env, "/Datastreams", **{
        "$filter": "geo.intersects(observedArea, geography'POINT(121.93 30.9)')"})
    assert {d["@iot.id"] // 8 for d in same["value"]} == {sta_env.day_sensor}
    fois = ok(http, sta_env, "/FeaturesOfInterest", **{
        "$filter": f"st_intersects(feature, geography'{poly}')", "$top": "10000"})
    assert f"point:{sta_env.day_sensor}" in {f["@iot.id"] for f in fois["value"]}


def test_nested_expand_with_options(http, sta_env):
    sid = sta_env.day_sensor
    body = ok(http, sta_env, f"/Things({sid})", **{
        "$expand": "Datastreams($select=name;$orderby=name asc;$top=2;$count=true;"
                   "$expand=Observations($top=3;$orderby=phenomenonTime desc)),Locations",
        "$select": "name"})
    assert set(body) == {"name", "Datastreams", "Datastreams@iot.count",
                         "Datastreams@iot.nextLink", "Locations"}
    assert body["Datastreams@iot.count"] == 5
    names = [d["name"] for d in body["Datastreams"]]
    assert names == sorted(names) and len(names) == 2
    for d in body["Datastreams"]:
        times = [o["phenomenonTime"] for o in d["Observations"]]
        assert len(times) == 3 and times == sorted(times, reverse=True)
    assert body["Locations"][0]["@iot.id"] == sid
    path = ok(http, sta_env, "/Datastreams", **{
        "$filter": f"Thing/@iot.id eq {sid}", "$expand": "Thing/Locations,Sensor"})
    assert all(d["Thing"]["Locations"][0]["@iot.id"] == sid and d["Sensor"]["name"] == "air"
               for d in path["value"])


def test_filter_through_to_many_navigation_means_any(http, sta_env, store_conn):
    sid, trk = sta_env.day_sensor, sta_env.tracker

    def ids(entity_set: str, flt: str) -> list:
        body = ok(http, sta_env, "/" + entity_set, **{"$filter": flt, "$top": "10000"})
        return [x["@iot.id"] for x in body["value"]]

    assert ids("Things", "Datastreams/name eq 'air-day no2_ugm3'") == [sid]
    water = [r[0] for r in store_conn.execute(
        "SELECT id FROM citypulse.sensors WHERE kind = 'water' ORDER BY id")]
    assert water and ids("Things", "Datastreams/ObservedProperty/name eq 'level_m'") == water
    assert ids("Things", "not (Datastreams/ObservedProperty/name eq 'level_m') and "
                         "properties/kind eq 'water'") == []
    air = ids("ObservedProperties", "Datastreams/Thing/name eq 'air-day'")
    assert sorted(air) == sorted(ids("ObservedProperties", "Datastreams/Sensor/name eq 'air'"))
    assert len(air) == 5
    assert ids("Locations", "Things/name eq 'air-day'") == [sid]
    # a tracker is where it last reported: its current Location, through Things' Locations
    poly = "POLYGON((121.80 30.90, 121.83 30.90, 121.83 30.96, 121.80 30.96, 121.80 30.90))"
    assert ids("Things", f"st_within(Locations/location, geography'{poly}')") == [trk]
    lo = f"{DAY:%Y-%m-%d}T09:59:00Z"
    assert ids("Things", f"HistoricalLocations/time ge {lo} and HistoricalLocations/time lt "
                         f"{DAY:%Y-%m-%d}T10:00:00Z") == [trk]
    assert ids("Sensors", "startswith(Datastreams/name, 'air-day')") == [
        next(s["@iot.id"] for s in ok(http, sta_env, "/Sensors")["value"] if s["name"] == "air")]
    for flt in ("Datastreams/name eq name", "Datastreams/Observations/result gt 1",
                "Datastreams eq 1"):
        r = get(http, sta_env, "/Things", **{"$filter": flt})
        assert r.status_code == 400 and r.json()["message"], flt
    assert get(http, sta_env, "/Things", **{"$orderby": "Datastreams/name"}).status_code == 400


def test_latest_observation_per_datastream(http, sta_env, store_conn):
    body = ok(http, sta_env, "/Datastreams", **{
        "$filter": "Sensor/name eq 'traffic'", "$top": "50",
        "$expand": "Observations($top=1;$orderby=phenomenonTime desc)"})
    assert len(body["value"]) == 50
    for d in body["value"]:
        sensor, slot = divmod(d["@iot.id"], 8)
        t, v = store_conn.execute(
            f"SELECT time, v{slot} FROM citypulse.raw WHERE sensor = %s AND v{slot} IS NOT "
            "NULL ORDER BY time DESC LIMIT 1", (sensor,)).fetchone()
        (o,) = d["Observations"]
        assert o["result"] == v and o["phenomenonTime"][:19] == f"{t:%Y-%m-%dT%H:%M:%S}"


def test_count_of_a_day_matches_raw_with_late_data(http, sta_env, store_conn):
    sid = sta_env.day_sensor
    lo, hi = DAY.strftime("%Y-%m-%dT%H:%M:%SZ"), (DAY.replace(hour=23, minute=59, second=59)
                                                 ).strftime("%Y-%m-%dT%H:%M:%SZ")
    for slot, expected in ((0, 1440 + len(LATE)), (2, 720 + len(LATE))):
        body = ok(http, sta_env, f"/Datastreams({sid * 8 + slot})/Observations", **{
            "$filter": f"phenomenonTime ge {lo} and phenomenonTime le {hi}",
            "$count": "true", "$top": "0"})
        assert body["@iot.count"] == expected
    # half-open windows off the minute boundaries
    body = ok(http, sta_env, f"/Datastreams({sid * 8})/Observations", **{
        "$filter": f"phenomenonTime gt {DAY:%Y-%m-%d}T05:00:30Z and "
                   f"phenomenonTime lt {DAY:%Y-%m-%d}T05:03:40Z", "$count": "true"})
    assert body["@iot.count"] == len(body["value"]) == 3 + 1  # 05:01, :02, :03, :03:30


def test_data_array(http, sta_env):
    ds = sta_env.day_sensor * 8 + 1
    body = ok(http, sta_env, f"/Datastreams({ds})/Observations", **{
        "$resultFormat": "dataArray", "$select": "phenomenonTime,result", "$top": "4"})
    (group,) = body["value"]
    assert group["components"] == ["phenomenonTime", "result"]
    assert group["dataArray@iot.count"] == 4 and group["dataArray"][0][1] == 20.0
    assert group["Datastream@iot.navigationLink"].endswith(f"/Datastreams({ds})")
    r = get(http, sta_env, "/Things", **{"$resultFormat": "dataArray"})
    assert r.status_code == 400


def test_features_of_interest_from_placement(http, sta_env, store_conn):
    seg, sensor = store_conn.execute(
        "SELECT segment_id, sensor FROM citypulse.sensor_placement WHERE segment_id IS NOT "
        "NULL ORDER BY sensor LIMIT 1").fetchone()
    ds = sensor * 8
    obs = ok(http, sta_env, f"/Datastreams({ds})/Observations", **{"$top": "1"})["value"][0]
    foi = requests.get(obs["FeatureOfInterest@iot.navigationLink"], headers=http.headers).json()
    assert foi["@iot.id"] == f"segment:{seg}" and foi["feature"]["type"] == "LineString"
    on_seg = ok(http, sta_env, f"/FeaturesOfInterest('segment:{seg}')/Observations",
                **{"$count": "true", "$top": "1"})
    n = store_conn.execute(
        "SELECT count(*) FROM citypulse.raw r JOIN citypulse.sensor_placement p ON "
        "p.sensor = r.sensor CROSS JOIN LATERAL (VALUES (r.v0), (r.v1), (r.v2), (r.v3), "
        "(r.v4), (r.v5), (r.v6), (r.v7)) x(v) WHERE p.segment_id = %s AND x.v IS NOT NULL",
        (seg,)).fetchone()[0]
    assert on_seg["@iot.count"] == n > 0


def test_access_needs_a_credential(sta_env):
    r = requests.get(sta_env.url + "/Things")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic")
    assert requests.get(sta_env.url + "/Things", auth=(USER, PASSWORD)).status_code == 200
    assert requests.get(sta_env.url + "/Things", auth=(USER, "wrong")).status_code == 401
    bad = requests.get(sta_env.url + "/Things", headers={"Authorization": "Bearer cpk_x"})
    assert bad.status_code == 401
    s = requests.Session()  # a browser session works too
    s.post(sta_env.base + "/login", data={"username": USER, "password": PASSWORD},
           headers={"Origin": sta_env.base}, allow_redirects=False)
    assert s.get(sta_env.url + "/Things").status_code == 200


def test_key_without_read_scope_is_refused(sta_env):
    from citypulse import apikeys

    with psycopg.connect(sta_env.db, autocommit=True) as conn:
        _info, key = apikeys.create(conn, "ingest-only", ["ingest:gateway"], created_by="t")
    r = requests.get(sta_env.url + "/Things", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 403
