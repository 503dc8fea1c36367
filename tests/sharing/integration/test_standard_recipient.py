"""A sharing recipient's key on SensorThings and NGSI-LD, through the real app: it sees
only what its scenario's policy delivers raw, equal to the store; the rest is absent;
every read is on the evidence chain; a key with neither api:read nor its share scope: 403."""

from __future__ import annotations

import pytest
import requests

from citypulse.catalogue import KINDS
from sharing import evidence
from tests.sharing.conftest import serve_recipients

WATER_RAW = """title: raw water levels
purpose: flood model calibration with raw gauge levels
recipients: [{name: water-lab}]
destination: domestic
datasets:
  readings.water:
    fields:
      time:
      sensor_id:
      lon:
      lat:
      zone_id:
      level_m:
"""
WATER_PSEUDO = WATER_RAW.replace("water-lab", "pseudo-lab").replace(
    "sensor_id:", "sensor_id: {pseudonymise: {}}")
LEVEL = [m.name for m in KINDS["water"].metrics].index("level_m")
RAIN = [m.name for m in KINDS["water"].metrics].index("rain_mm_h")
STA, NGSI = "/sta/v1.1", "/ngsi-ld/v1"


@pytest.fixture(scope="module")
def env(share_db, share_data_dir, tmp_path_factory):
    served, keys = serve_recipients(
        share_db, share_data_dir, tmp_path_factory.mktemp("std-recipient"),
        {"water_raw": WATER_RAW, "water_pseudo": WATER_PSEUDO},
        {"water-lab": ["share:water_raw"], "pseudo-lab": ["share:water_pseudo"],
         "tongji-flood-lab-std": ["share:flood_research"],  # not a named recipient
         "gw-only": ["ingest:gateway"]})
    yield served.url, keys
    served.stop()


def _get(env, who: str, path: str, **params) -> requests.Response:
    url, keys = env
    return requests.get(url + path, params=params, timeout=60,
                        headers={"Authorization": f"Bearer {keys[who]}"})


def _ids(conn, kind: str) -> list[int]:
    return [r[0] for r in conn.execute(
        "SELECT id FROM citypulse.sensors WHERE kind = %s ORDER BY id", (kind,))]


def test_sta_recipient_sees_its_kinds_and_fields_only(env, share_conn):
    water = _ids(share_conn, "water")
    r = _get(env, "water-lab", STA + "/Things", **{"$top": "1000", "$count": "true"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["@iot.count"] == len(water)
    assert sorted(t["@iot.id"] for t in body["value"]) == water
    assert all(set(t["properties"]) <= {"kind", "zone_id"} for t in body["value"])
    ds = _get(env, "water-lab", STA + "/Datastreams", **{"$top": "1000"}).json()["value"]
    assert sorted(d["@iot.id"] for d in ds) == sorted(i * 8 + LEVEL for i in water)
    props = _get(env, "water-lab", STA + "/ObservedProperties").json()["value"]
    assert [p["name"] for p in props] == ["level_m"]
    # denied: another kind's thing, the rain datastream, its observations
    other = _ids(share_conn, "air")[0]
    assert _get(env, "water-lab", f"{STA}/Things({other})").status_code == 404
    rain = water[0] * 8 + RAIN
    assert _get(env, "water-lab", f"{STA}/Datastreams({rain})").status_code == 404
    got = _get(env, "water-lab", STA + "/Observations",
               **{"$filter": f"Datastream/@iot.id eq {rain}", "$count": "true"}).json()
    assert got["value"] == [] and got["@iot.count"] == 0
    any_obs = _get(env, "water-lab", STA + "/Observations", **{"$top": "200"}).json()["value"]
    assert any_obs and all((o["@iot.id"] >> 42) % 8 == LEVEL for o in any_obs)
    # expansions and filter paths go through the same cut
    t = _get(env, "water-lab", f"{STA}/Things({water[0]})",
             **{"$expand": "Datastreams($expand=ObservedProperty)"}).json()
    assert [d["ObservedProperty"]["name"] for d in t["Datastreams"]] == ["level_m"]
    hidden = _get(env, "water-lab", STA + "/Datastreams", **{
        "$filter": "Thing/properties/gateway_id ne 'no-such-gateway'"}).json()["value"]
    assert hidden == []


def test_sta_observations_equal_the_store_and_are_evidenced(env, share_conn):
    sensor = _ids(share_conn, "water")[3]
    r = _get(env, "water-lab", f"{STA}/Datastreams({sensor * 8 + LEVEL})/Observations",
             **{"$top": "1000", "$orderby": "phenomenonTime asc"})
    assert r.status_code == 200, r.text
    got = [o["result"] for o in r.json()["value"]]
    want = [row[0] for row in share_conn.execute(
        f"SELECT v{LEVEL} FROM citypulse.raw WHERE sensor = %s AND v{LEVEL} IS NOT NULL "
        "ORDER BY time", (sensor,))]
    assert got == want and len(want) >= 10
    entry = evidence.get(share_conn, r.headers["X-Evidence-Id"])
    assert entry["channel"] == "sta" and entry["recipient"] == "water-lab"
    assert entry["scenario"] == "water_raw" and entry["row_count"] == len(want)
    assert "readings.water.level_m" in entry["fields_delivered"]
    assert any(w["field"] == "readings.water.rain_mm_h" for w in entry["fields_withheld"])
    miss = _get(env, "water-lab", f"{STA}/Datastreams({sensor * 8 + RAIN})")
    assert evidence.get(share_conn, miss.headers["X-Evidence-Id"])["outcome"] == "refused"


def test_pseudonymised_ids_are_not_served_raw(env):
    """A scenario that pseudonymises sensor ids shows no thing, device or observation."""
    body = _get(env, "pseudo-lab", STA + "/Things", **{"$count": "true"}).json()
    assert body == {"@iot.count": 0, "value": []}
    assert _get(env, "pseudo-lab", STA + "/Observations").json()["value"] == []
    assert _get(env, "pseudo-lab", NGSI + "/entities", type="Device").json() == []


def test_ngsild_recipient_sees_its_devices_only(env, share_conn):
    water = share_conn.execute("SELECT sensor_id FROM citypulse.sensors WHERE kind = 'water' "
                               "ORDER BY sensor_id").fetchall()
    r = _get(env, "water-lab", NGSI + "/entities", type="Device", limit="1000", count="true",
             options="keyValues")
    assert r.status_code == 200, r.text
    got = r.json()
    assert sorted(e["name"] for e in got) == [w[0] for w in water]
    assert int(r.headers["NGSILD-Results-Count"]) == len(water)
    assert all("gatewayId" not in e and e["location"]["type"] == "Point" for e in got)
    air = share_conn.execute("SELECT sensor_id FROM citypulse.sensors WHERE kind = 'air' "
                             "LIMIT 1").fetchone()[0]
    assert _get(env, "water-lab", f"{NGSI}/entities/urn:ngsi-ld:Device:{air}").status_code == 404
    assert _get(env, "water-lab", NGSI + "/entities", type="TrafficFlowObserved").json() == []
    models = _get(env, "water-lab", NGSI + "/entities", type="DeviceModel",
                  options="keyValues").json()
    assert [(m["name"], m["measuredMetrics"]) for m in models] == [("water", ["level_m"])]
    assert r.headers.get("X-Evidence-Id")


def test_keys_without_the_scope_or_recipient_name_are_refused(env):
    for who in ("gw-only", "tongji-flood-lab-std"):
        for path in (STA + "/Things", NGSI + "/entities?type=Device"):
            r = _get(env, who, path)
            assert r.status_code == 403, (who, path, r.text)
            assert "X-Evidence-Id" not in r.headers
