"""Source adapters: decoding the vendors' documented payloads, mapping files, HTTP bodies."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from citypulse.wire import payload as wp
from ingest import sources
from ingest.sources import mapping as mp

FIX = Path(__file__).parent / "fixtures" / "sources"
NOW = 1_764_000_000_000


def fixture(name: str) -> bytes:
    return (FIX / name).read_bytes()


def dec(source: str, topic: str, payload: bytes, max_bytes: int = 1_048_576):
    src = sources.get(source)
    assert src.claims(topic)
    return src.decode(topic, payload, NOW, mp.load(source), max_bytes)


def test_registered_like_builtins():
    names = {s.name: s.trust for s in sources.available()}
    assert names == {"thingsboard": "payload", "chirpstack": "network_server",
                     "ttn": "network_server", "http": "api_key"}
    with pytest.raises(KeyError, match="known: thingsboard"):
        sources.get("lorawan")


def test_chirpstack_uplink_from_docs():
    f = dec("chirpstack", "application/17c8/device/0101010101010101/event/up",
            fixture("chirpstack_up.json"))
    assert not f.rejected
    (r,) = f.readings
    assert r.sensor_id == "0101010101010101" and r.seq == 10
    assert r.ts_ms == wp.parse_ts("2022-07-18T09:34:15.775+00:00", 0)
    assert dict(r.values) == pytest.approx({"level_m": 1.34, "rain_mm_h": 2.5, "rssi_dbm": -36})
    assert dict(f.events[0].health) == {"rssi_dbm": -36, "snr_db": 10.5}


def test_chirpstack_status_and_join():
    f = dec("chirpstack", "application/a/device/0101010101010101/event/status",
            fixture("chirpstack_status.json"))
    assert [dict(r.values) for r in f.readings] == [{"battery_pct": 75.5}]
    assert f.events[0].status == "online" and dict(f.events[0].health)["margin_db"] == 6
    f = dec("chirpstack", "application/a/device/0101010101010101/event/join",
            fixture("chirpstack_join.json"))
    assert not f.readings and f.events[0].status == "online"


def test_chirpstack_rejects():
    t = "application/a/device/0101010101010101/event/up"
    doc = json.loads(fixture("chirpstack_up.json"))
    assert dec("chirpstack", t, b"{nope").rejected[0].reason == wp.MALFORMED
    assert dec("chirpstack", t, b"x" * 2000, 1024).rejected[0].reason == wp.TOO_LARGE
    other = dict(doc, deviceInfo={"devEui": "0202020202020202"})
    assert "payload 0202" in dec("chirpstack", t, orjson.dumps(other)).rejected[0].detail
    assert dec("chirpstack", t, orjson.dumps(dict(doc, time="yesterday"))).rejected[0].reason \
        == wp.BAD_TIMESTAMP
    f = dec("chirpstack", t, orjson.dumps(dict(doc, object={"humidity": 40, "rainfall": 1})))
    assert [r.reason for r in f.rejected] == [wp.UNKNOWN_METRIC]
    assert dict(f.readings[0].values)["rain_mm_h"] == 1
    assert dec("chirpstack", t, orjson.dumps(dict(doc, object=None))).rejected[0].reason \
        == wp.MALFORMED
    assert not sources.get("chirpstack").claims("application/a/device/x/event/log")


def test_ttn_uplink_from_docs():
    f = dec("ttn", "v3/app1@tenant1/devices/dev1/up", fixture("ttn_up.json"))
    assert not f.rejected
    (r,) = f.readings
    assert r.sensor_id == "dev1" and r.seq == 7
    assert r.ts_ms == wp.parse_ts("2020-02-12T15:15:45.787Z", 0)
    assert dict(r.values) == {"pm25_ugm3": 12, "pm10_ugm3": 20.5, "rssi_dbm": -35}
    bad = dec("ttn", "v3/app1@tenant1/devices/dev2/up", fixture("ttn_up.json"))
    assert bad.rejected[0].reason == wp.MALFORMED and "payload dev1" in bad.rejected[0].detail


def test_thingsboard_gateway_api():
    tele = orjson.dumps({"Device A": [{"ts": NOW - 5, "values": {"temperature": 42}}],
                         "Device B": [{"speed_kmh": 30}], "Device C": {"noise": 61}})
    f = dec("thingsboard", "v1/gateway/telemetry", tele)
    got = {(r.sensor_id, r.ts_ms): dict(r.values) for r in f.readings}
    assert got == {("Device A", NOW - 5): {"temperature_c": 42},
                   ("Device B", NOW): {"speed_kmh": 30}, ("Device C", NOW): {"laeq_db": 61}}
    f = dec("thingsboard", "v1/gateway/telemetry", orjson.dumps({"D": [{"humidity": 3}]}))
    assert [r.reason for r in f.rejected] == [wp.UNKNOWN_METRIC]
    ev = dec("thingsboard", "v1/gateway/connect", b'{"device": "Device A", "type": "pump"}')
    assert ev.events[0].status == "online"
    ev = dec("thingsboard", "v1/gateway/disconnect", b'{"device": "Device A"}')
    assert ev.events[0].status == "offline"
    assert dec("thingsboard", "v1/gateway/connect", b'{}').rejected[0].reason == wp.MALFORMED
    ev = dec("thingsboard", "v1/gateway/attributes", b'{"Device A": {"fw": "1.2"}, "B": 3}')
    assert orjson.loads(ev.events[0].attributes) == {"fw": "1.2"}
    assert ev.rejected[0].reason == wp.MALFORMED


def test_mapping_conversions_and_errors(tmp_path):
    m = mp.parse("fields:\n  tF: {metric: temperature_c, unit: degF}\n"
                 "  v: {metric: speed_kmh, unit: m/s}\n  mm: {metric: level_m, scale: 10, unit: mm}\n",
                 "x", "x.yaml")
    good, bad = m.apply([("tF", 212.0), ("v", 10.0), ("mm", 5.0), ("q", 1.0)])
    assert dict(good) == pytest.approx({"temperature_c": 100.0, "speed_kmh": 36.0, "level_m": 0.05})
    assert bad == (("q", 1.0),)
    cases = {
        "fields:\n  a: {metric: speed_kmh}\n  b: {metric: velocity}\n": "x.yaml line 3: 'velocity'",
        "fields:\n  a: {metric: speed_kmh, unit: furlongs}\n": "x.yaml line 2: no conversion",
        "fields:\n  a: {metric: speed_kmh, scale: fast}\n": "x.yaml line 2: scale must be",
        "fields:\n  a: {metrc: speed_kmh}\n": "x.yaml line 2: unknown option 'metrc'",
        "passthrough: 3\n": "x.yaml line 1: passthrough",
        "colours: {}\n": "x.yaml line 1: unknown key 'colours'",
        "fields: [\n": "x.yaml line 2: not valid YAML",
    }
    for text, msg in cases.items():
        with pytest.raises(mp.MappingError) as exc:
            mp.parse(text, "x", "x.yaml")
        assert msg in str(exc.value)
    (tmp_path / "ttn.yaml").write_text("devices:\n  dev1: air-1\n")
    assert mp.load("ttn", tmp_path).devices["dev1"] == "air-1"
    assert mp.load("chirpstack", tmp_path).path.endswith("mappings/chirpstack.yaml")


def test_http_bodies():
    http = sources.get("http")
    m = mp.load("http")

    def body(b, ctype="application/json", sid=None):
        return http.decode_body(b, ctype, sid, NOW, m, 1_048_576)

    one = body(b'{"ts": 1, "values": {"speed_kmh": 3}}', sid="s1")
    assert [(r.sensor_id, r.ts_ms) for r in one.readings] == [("s1", 1)]
    arr = body(b'[{"sensor_id": "s1", "ts": 1, "values": {"speed_kmh": 3}},'
               b' {"sensor_id": "s2", "values": {"speed_kmh": 4}}]')
    assert {r.sensor_id for r in arr.readings} == {"s1", "s2"}
    gw = body(b'{"s1": [{"ts": 1, "values": {"speed_kmh": 3, "colour": 2}}]}')
    assert len(gw.readings) == 1 and gw.rejected[0].reason == wp.UNKNOWN_METRIC
    csv = body(b"sensor_id,ts,seq,speed_kmh,vehicle_count\ns1,1000,1,30,\ns2,x,2,1,1\n"
               b"s3,1000\n", "text/csv")
    assert [dict(r.values) for r in csv.readings] == [{"speed_kmh": 30}]
    assert sorted(r.reason for r in csv.rejected) == [wp.BAD_TIMESTAMP, wp.MALFORMED]
    assert "line 4" in [r for r in csv.rejected if r.reason == wp.MALFORMED][0].detail
    assert body(b"nope").rejected[0].reason == wp.MALFORMED


def test_cli_sources_list_and_check(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from citypulse.cli import app

    monkeypatch.setenv("CITYPULSE_SOURCES", "chirpstack, ttn")
    r = CliRunner().invoke(app, ["sources", "list", "--json"])
    assert r.exit_code == 0, r.output
    rows = {x["name"]: x for x in json.loads(r.output)}
    assert set(rows) == {"thingsboard", "chirpstack", "ttn", "http"}
    assert rows["ttn"]["enabled"] and not rows["thingsboard"]["enabled"]
    assert rows["chirpstack"]["topics"][0] == "application/+/device/+/event/up"
    bad = tmp_path / "chirpstack.yaml"
    bad.write_text("fields:\n  t: {metric: temperature_c}\n  x: {metric: warmth}\n")
    r = CliRunner().invoke(app, ["sources", "check", str(bad)])
    assert r.exit_code == 2 and "chirpstack.yaml line 3: 'warmth'" in r.output
    monkeypatch.setenv("CITYPULSE_SOURCES", "lora")
    assert CliRunner().invoke(app, ["sources", "list"]).exit_code == 2


def test_spool_keeps_source_side_records():
    from datetime import UTC, datetime

    from ingest.batcher import Batch
    from ingest.spool import Spool

    side = (("attrs", "s1", '{"fw": "1"}'),
            ("device", "chirpstack", "0101", "s1", None, '{"snr_db": 7.5}', NOW),
            ("quarantine", "ttn", "dev9", NOW, 2, b"{}"))
    b = Batch(((datetime.now(UTC), 1, 3, 1.0, None, None, None, None, None, None, None),), (),
              (), side=side, foreign=(("ttn", object()),))
    back = Spool.decode(Spool.encode(b))
    assert back.side == side and back.foreign == ()  # metrics were counted when spooled
