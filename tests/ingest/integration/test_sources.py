"""Source adapters end to end: real broker, real collector, real PostgreSQL."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from citypulse.settings import Settings
from ingest import registry
from tests.ingest.conftest import Publisher, wait_until

FIX = Path(__file__).parent.parent / "fixtures" / "sources"
EUI = "0101010101010101"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def register(db_url: str, rows: list[tuple[str, str, dict]]) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        registry.upsert(conn, [registry.SensorRecord(s, k, 121.93, 30.9, None, json.dumps(p))
                               for s, k, p in rows])


def q(db_url: str, sql: str, *args):
    with psycopg.connect(db_url, autocommit=True) as conn:
        return conn.execute(sql, args).fetchall()


def dead(db_url: str, like: str) -> dict[str, int]:
    return dict(q(db_url, "SELECT reason, count(*) FROM citypulse.dead_letters WHERE topic LIKE %s "
                  "GROUP BY 1", like))


@pytest.fixture
def lora(settings, start_collector, broker):
    # one writer connection: "the first delivery wins" is about commit order, which parallel
    # writers do not keep between batches
    cfg = settings.model_copy(update={"sources": ["chirpstack", "ttn", "thingsboard"],
                                      "device_rate_limit": 5.0, "max_payload_bytes": 4096,
                                      "writer_connections": 1})
    register(cfg.database_url, [("w-1", "water", {"chirpstack_device": EUI}),
                                ("a-1", "air", {"ttn_device": "dev1"}),
                                ("Pump A", "water", {}), ("t-9", "traffic",
                                                         {"thingsboard_device": "Loop 9"})])
    c = start_collector(cfg)
    pub = Publisher(broker.port)
    yield cfg, c, pub
    pub.close()


def test_chirpstack_and_ttn_land_with_fcnt_loss_and_duplicates(lora):
    cfg, c, pub = lora
    up = json.loads((FIX / "chirpstack_up.json").read_text())
    now = int(time.time() * 1000)
    topic = f"application/17c8/device/{EUI}/event/up"
    for i, fcnt in enumerate((10, 11, 13)):  # 12 is lost
        pub.publish(topic, dict(up, fCnt=fcnt, time=_iso(now - 3000 + i * 1000)))
    # the same uplink heard by a second gateway, delivered again: stored once
    second = dict(up, fCnt=11, time=_iso(now - 2000),
                  rxInfo=[dict(up["rxInfo"][0], gatewayId="0016c001f153a14d", rssi=-90)])
    pub.publish(topic, second)
    status = json.loads((FIX / "chirpstack_status.json").read_text())
    pub.publish(f"application/17c8/device/{EUI}/event/status", dict(status, time=_iso(now)))
    pub.publish(f"application/17c8/device/{EUI}/event/join",
                json.loads((FIX / "chirpstack_join.json").read_text()))
    ttn = json.loads((FIX / "ttn_up.json").read_text())
    for fcnt in (7, 9):
        m = ttn["uplink_message"]
        pub.publish("v3/app1@tenant1/devices/dev1/up", dict(ttn, uplink_message=dict(
            m, f_cnt=fcnt, rx_metadata=[dict(m["rx_metadata"][0], time=_iso(now - 1000 + fcnt))])))
    db = cfg.database_url
    rows = lambda sid: q(db, "SELECT r.seq, r.v0, r.v1, r.v2, r.v3 FROM citypulse.raw r JOIN "  # noqa: E731
                         "citypulse.sensors s ON s.id = r.sensor WHERE s.sensor_id = %s "
                         "ORDER BY r.time", sid)
    assert wait_until(lambda: len(rows("w-1")) == 4 and len(rows("a-1")) == 2, 30)
    assert c.wait_idle(10)
    w = rows("w-1")
    assert [r[0] for r in w[:3]] == [10, 11, 13]
    assert w[0][1:3] == pytest.approx((1.34, 2.5)) and w[0][4] == -36  # level_m, rain, rssi
    assert w[1][4] == -36  # the first delivery of fCnt 11 won; the duplicate was dropped
    assert w[3][0] is None and w[3][3] == 75.5  # status event: battery_pct
    assert [r[0] for r in rows("a-1")] == [7, 9]
    assert rows("a-1")[0][1:3] == (12, 20.5)
    v = c.metrics.value
    assert v("citypulse_ingest_source_seq_gaps_total", source="chirpstack") == 1
    assert v("citypulse_ingest_source_seq_gaps_total", source="ttn") == 1
    assert v("citypulse_ingest_messages_total", kind="chirpstack", source="chirpstack") == 6
    assert v("citypulse_ingest_source_readings_total", source="ttn") == 2
    assert q(db, "SELECT status FROM citypulse.sensor_status WHERE sensor_id = 'w-1'") == [("online",)]
    (health,) = q(db, "SELECT health FROM citypulse.source_devices WHERE source = 'chirpstack'")[0]
    assert health["snr_db"] == 10.5 and health["margin_db"] == 6
    assert dead(db, "%") == {}


def test_every_dead_letter_reason_per_dialect(lora):
    cfg, c, pub = lora
    now = int(time.time() * 1000)
    db = cfg.database_url
    up = json.loads((FIX / "chirpstack_up.json").read_text())
    cs = f"application/a/device/{EUI}/event/up"
    pub.publish(cs, b"{not json")                                          # malformed
    pub.publish(cs, b'{"object": {"a": "' + b"x" * 5000 + b'"}}')          # too_large
    pub.publish("application/a/device/0202020202020202/event/up",          # unknown_sensor
                dict(up, deviceInfo={}, time=_iso(now)))
    pub.publish(cs, dict(up, fCnt=1, time=_iso(now), object={"humidity": 40}))     # unknown_metric
    pub.publish(cs, dict(up, fCnt=2, time=_iso(now), object={"rainfall": 9999}))   # out_of_range
    pub.publish(cs, dict(up, fCnt=3, time=_iso(now + 3_600_000)))                  # bad_timestamp
    for i in range(30):                                                    # rate_limited
        pub.publish(cs, dict(up, fCnt=100 + i, time=_iso(now - 60_000 + i)))
    ttn = json.loads((FIX / "ttn_up.json").read_text())
    tt = "v3/app1@tenant1/devices/dev1/up"
    m = ttn["uplink_message"]
    pub.publish(tt, b"[1, 2")
    pub.publish(tt, b"x" * 5000)
    pub.publish("v3/app1@tenant1/devices/dev7/up", dict(ttn, end_device_ids={}))
    m = dict(m, rx_metadata=[], received_at=_iso(now))
    pub.publish(tt, dict(ttn, uplink_message=dict(m, decoded_payload={"ozone": 1})))
    pub.publish(tt, dict(ttn, uplink_message=dict(m, decoded_payload={"pm10": -5})))
    pub.publish(tt, dict(ttn, uplink_message=dict(m, rx_metadata=[], received_at="not a time")))
    for i in range(30):
        pub.publish(tt, dict(ttn, uplink_message=dict(m, f_cnt=50 + i, rx_metadata=[],
                                                      received_at=_iso(now - 1000 + i))))
    tb = "v1/gateway/telemetry"
    pub.publish(tb, b"nope")
    pub.publish(tb, {"Pump A": [{"level_m": 1.0, "pad": "x" * 5000}]})
    pub.publish(tb, {"Nobody": [{"ts": now, "values": {"level_m": 1.0}}]})
    pub.publish(tb, {"Pump A": [{"ts": now, "values": {"humidity": 3}}]})
    pub.publish(tb, {"Pump A": [{"ts": now, "values": {"level_m": 500}}]})
    pub.publish(tb, {"Loop 9": [{"ts": now + 3_600_000, "values": {"speed_kmh": 3}}]})
    pub.publish("v1/gateway/connect", {"device": "Nobody"})
    reasons = {"malformed", "too_large", "unknown_sensor", "unknown_metric", "out_of_range",
               "bad_timestamp"}
    assert wait_until(lambda: set(dead(db, "application/%")) >= reasons | {"rate_limited"}
                      and set(dead(db, "v3/%")) >= reasons | {"rate_limited"}
                      and set(dead(db, "v1/gateway/%")) >= reasons, 30), \
        str((dead(db, "application/%"), dead(db, "v3/%"), dead(db, "v1/gateway/%")))
    assert c.wait_idle(10)
    assert dead(db, "v1/gateway/%")["unknown_sensor"] == 2  # telemetry and connect
    for src in ("chirpstack", "ttn", "thingsboard"):
        assert c.metrics.value("citypulse_ingest_source_dead_letters_total", source=src,
                               reason="unknown_metric") == 1


def test_thingsboard_gateway_sdk_connects_devices_sends_telemetry_and_attributes(lora, broker):
    """ThingsBoard's own SDK (TBGatewayMqttClient) as the gateway, unchanged."""
    import subprocess

    from tests.ingest.vendor import vendor_python

    cfg, c, _pub = lora
    now = int(time.time() * 1000)
    plan = {"connect": ["Pump A", "Loop 9"],
            "telemetry": [["Pump A", {"ts": now - 2000, "values": {"waterLevel": 1.25}}],
                          ["Pump A", {"ts": now - 1000, "values": {"level_m": 1.5,
                                                                   "battery": 80}}],
                          ["Loop 9", {"speed": 42.0, "vehicle_count": 7}]],  # short form
            "attributes": [["Pump A", {"firmware": "3.1.4", "vendor": "ACME"}]]}
    script = Path(__file__).parent.parent / "tb_gateway_script.py"
    out = subprocess.run([str(vendor_python()), str(script), str(cfg.mqtt.port),
                          json.dumps(plan)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "done" in out.stdout, out.stderr[-2000:]
    db = cfg.database_url
    readings = lambda: q(db, "SELECT s.sensor_id, r.v0, r.v1, r.v2 FROM citypulse.raw r JOIN "  # noqa: E731
                         "citypulse.sensors s ON s.id = r.sensor ORDER BY r.time")
    props = lambda: q(db, "SELECT props->'attributes' FROM citypulse.sensors "  # noqa: E731
                      "WHERE sensor_id = 'Pump A'")[0][0]
    assert wait_until(lambda: len(readings()) == 3 and props(), 30), readings()
    assert c.wait_idle(10)
    got = readings()
    assert got[0] == ("Pump A", 1.25, None, None)
    assert got[1] == ("Pump A", 1.5, None, 80)
    assert got[2] == ("t-9", 7, 42.0, None)  # Loop 9 -> t-9 via the thingsboard_device column
    assert props() == {"firmware": "3.1.4", "vendor": "ACME"}
    st = dict(q(db, "SELECT sensor_id, status FROM citypulse.sensor_status"))
    assert st == {"Pump A": "online", "t-9": "online"}
    assert c.metrics.value("citypulse_ingest_messages_total", kind="thingsboard",
                           source="thingsboard") == 6
    assert dead(db, "%") == {}


def test_side_records_need_only_the_collector_role(db, db_url):
    """Attributes, device status/health and quarantine are written as citypulse_collector."""
    from ingest.sources.hub import SourceHub

    register(db_url, [("Pump A", "water", {"thingsboard_device": "PA"})])
    now = int(time.time() * 1000)
    db.execute("SET ROLE citypulse_collector")
    with db.transaction():
        SourceHub.write_side(db, [
            ("attrs", "Pump A", '{"fw": "1"}'),
            ("device", "thingsboard", "PA", "Pump A", "online", '{"rssi_dbm": -70}', now),
            ("quarantine", "chirpstack", "dead-beef", now, 2, b"{}")])
    hub = SourceHub(Settings(sources=["thingsboard"]))
    hub.refresh(db)
    assert hub.aliases == {("thingsboard", "PA"): "Pump A"}
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("UPDATE citypulse.sensors SET kind = 'air'")
    db.execute("RESET ROLE")
    assert q(db_url, "SELECT props->'attributes' FROM citypulse.sensors")[0][0] == {"fw": "1"}
    assert q(db_url, "SELECT messages FROM citypulse.source_quarantine") == [(2,)]


def test_unknown_devices_go_to_quarantine_when_enabled(settings, start_collector, broker):
    from typer.testing import CliRunner

    from citypulse.cli import app

    cfg = settings.model_copy(update={"sources": ["thingsboard"], "sources_quarantine": True})
    c = start_collector(cfg)
    pub = Publisher(broker.port)
    now = int(time.time() * 1000)
    for i in range(3):
        pub.publish("v1/gateway/telemetry", {"Stranger 1": [{"ts": now + i, "values": {"level_m": 1}}]})
    pub.close(sent=3)
    db = cfg.database_url
    assert wait_until(lambda: q(db, "SELECT messages FROM citypulse.source_quarantine") == [(3,)], 30)
    assert c.wait_idle(10)
    assert dead(db, "v1/gateway/%") == {"unknown_sensor": 3}  # the readings stay recoverable
    assert c.metrics.value("citypulse_ingest_source_quarantined_total", source="thingsboard") == 3
    r = CliRunner().invoke(app, ["sources", "quarantine", "--database-url", db])
    assert r.exit_code == 0, r.output
    assert [(x["source"], x["device"], x["messages"]) for x in json.loads(r.output)] == [
        ("thingsboard", "Stranger 1", 3)]
