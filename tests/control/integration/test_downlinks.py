"""Commands through the source adapters' downlinks: ThingsBoard gateway RPC (driven by
ThingsBoard's own gateway SDK), the ChirpStack v4 and The Things Stack v3 downlink queues, against the real broker,
collector, PostgreSQL and commands worker."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
from psycopg.types.json import Jsonb

from citypulse.wire import foreign as wf
from control import api, records
from tests.ingest.conftest import Publisher, start_collector  # noqa: F401  (fixture)
from tests.support import wait_for

from ..conftest import wait_status

OP = {"by": "ana", "role": "operator"}
APP = "7f3c0a52-5d0e-4a57-9f43-2b1c8a0d6e11"
EUI = "a84041000181c061"
TTS_APP, TTS_DEV = "city-pumps@tenant1", "pump-ttn-7"


@pytest.fixture
def adapters(ctl_settings, start_collector):  # noqa: F811
    cfg = ctl_settings.model_copy(update={"sources": ["thingsboard", "chirpstack", "ttn"],
                                          "writer_connections": 1})
    with psycopg.connect(cfg.database_url, autocommit=True) as c:
        for sid, kind, props in (("vms-tb", "sign", {"thingsboard_device": "VMS North"}),
                                 ("pmp-cs", "pump", {"chirpstack_device": EUI}),
                                 ("pmp-tts", "pump", {"ttn_device": TTS_DEV}),
                                 ("vms-own", "sign", {})):
            c.execute("INSERT INTO citypulse.sensors (sensor_id, kind, lon, lat, props) VALUES "
                      "(%s, %s, 121.93, 30.9, %s)", (sid, kind, Jsonb({"zone_id": "z1", **props})))
    start_collector(cfg)
    return cfg


@pytest.fixture
def adapter_worker(adapters):
    from control.worker import Worker

    w = Worker(adapters, client_id="commands-downlinks")
    stop = threading.Event()
    t = threading.Thread(target=w.run, args=(stop,), daemon=True)
    t.start()
    assert w.link.wait_connected(10)
    yield w
    stop.set()
    t.join(10)


def route(db, sid):
    return db.execute("SELECT source, device, scope FROM citypulse.source_devices "
                      "WHERE sensor_id = %s", (sid,)).fetchone()


def heard(db, sid):
    """The route the collector learnt for ``sid``, once its one reading is stored."""
    got = wait_for(lambda: route(db, sid), 30)
    assert wait_for(lambda: db.execute(
        "SELECT count(*) FROM citypulse.raw r JOIN citypulse.sensors s ON s.id = r.sensor "
        "WHERE s.sensor_id = %s", (sid,)).fetchone()[0] == 1, 30)
    return got


def test_thingsboard_rpc_round_trip_through_the_gateway_sdk(db, adapters, adapter_worker):
    from tests.ingest.vendor import vendor_python

    plan = {"devices": ["VMS North"], "replies": {"show": {"shown": "Flood: use ring road"}}}
    script = Path(__file__).parent.parent / "tb_gateway_rpc_script.py"
    gw = subprocess.Popen([str(vendor_python()), str(script), str(adapters.mqtt.port),
                           json.dumps(plan)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x.strip()) for x in gw.stdout], daemon=True).start()
    try:
        assert lines.get(timeout=60) == "ready"
        # the collector learnt the route from the SDK's v1/gateway/connect
        assert wait_for(lambda: route(db, "vms-tb"), 30) == ("thingsboard", "VMS North", None)
        rec = api.request(db, adapters, "vms-tb", "show",
                          {"text": "Flood: use ring road", "priority": "danger"}, **OP)
        done = wait_status(db, rec["id"], "succeeded")
        assert done["result"] == {"shown": "Flood: use ring road"}
        assert [e["action"] for e in done["events"]][:4] == ["request", "queue", "send", "ok"]
        got = lines.get(timeout=10)
        assert got.startswith("rpc ")
        assert json.loads(got[4:]) == {"device": "VMS North", "id": done["seq"],
                                       "method": "show", "params": {
                                           "text": "Flood: use ring road",
                                           "priority": "danger"}}
        # an unknown method on the gateway side: its error reply fails the command
        bad = api.request(db, adapters, "vms-tb", "clear", **OP)
        failed = wait_status(db, bad["id"], "failed")
        assert "unknown method clear" in failed["reason"]
        assert json.loads(lines.get(timeout=10)[4:])["id"] == failed["seq"]
        # a device that did not come through an adapter stays on citypulse's own contract
        own = api.request(db, adapters, "vms-own", "clear", **OP)
        assert wait_for(lambda: records.get(db, own["id"])["status"] == "sent", 10)
        assert lines.empty()
    finally:
        gw.stdin.close()
        gw.wait(30)
    assert gw.returncode == 0, gw.stderr.read()[-2000:]


class FakeServer:
    """Plays a network server's MQTT integration: takes downlinks on ``down``, publishes."""

    def __init__(self, port: int, down: str, qos: int = 1) -> None:
        self.down: queue.Queue[tuple[str, dict]] = queue.Queue()
        self.sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        ready = threading.Event()
        self.sub.on_connect = lambda c, *_: c.subscribe(down, qos)
        self.sub.on_subscribe = lambda *_: ready.set()
        self.sub.on_message = lambda _c, _u, m: self.down.put((m.topic, orjson.loads(m.payload)))
        self.sub.connect("127.0.0.1", port)
        self.sub.loop_start()
        assert ready.wait(10)
        self.pub = Publisher(port)

    def close(self) -> None:
        self.sub.loop_stop()
        self.sub.disconnect()
        self.pub.close()


class NetworkServer(FakeServer):
    """Plays ChirpStack's MQTT integration: takes downlinks, publishes their outcomes."""

    def __init__(self, port: int) -> None:
        super().__init__(port, wf.chirpstack_down(APP, "+"))

    def event(self, event: str, doc: dict) -> None:
        self.pub.publish(wf.chirpstack(APP, EUI, event), {
            "deviceInfo": {"applicationId": APP, "devEui": EUI}, **doc})


def test_chirpstack_downlink_lands_on_the_queue_topic_and_acks_settle_it(db, adapters,
                                                                         adapter_worker):
    ns = NetworkServer(adapters.mqtt.port)
    try:
        # an uplink (no event besides the reading) teaches the route and the sump level
        ns.event("up", {"fCnt": 1, "fPort": 2, "object": {"sump_level_m": 1.2}})
        assert heard(db, "pmp-cs") == ("chirpstack", EUI, APP)
        rec = api.request(db, adapters, "pmp-cs", "start", {"flow_m3_h": 700}, **OP)
        topic, body = ns.down.get(timeout=30)
        assert topic == f"application/{APP}/device/{EUI}/command/down"
        assert body == {"id": str(rec["id"]), "devEui": EUI, "confirmed": True, "fPort": 10,
                        "object": {"method": "start", "params": {"flow_m3_h": 700.0}}}
        assert records.get(db, rec["id"])["status"] == "sent"
        ns.event("ack", {"queueItemId": "00000000-0000-0000-0000-000000000000",
                         "acknowledged": True})  # names no command: changes nothing
        ns.event("txack", {"queueItemId": str(rec["id"]), "fCntDown": 4,
                           "gatewayId": "0016c001f153a14c"})
        wait_status(db, rec["id"], "delivered")
        # another device naming the command (a spoof, or a confused network server): ignored,
        # or the command would fail here, before the real ack below
        ns.pub.publish(wf.chirpstack(APP, "ffffffffffffffff", "ack"), {
            "deviceInfo": {"devEui": "ffffffffffffffff"}, "queueItemId": str(rec["id"])})
        ns.event("ack", {"queueItemId": str(rec["id"]), "acknowledged": True, "fCntDown": 4})
        done = wait_status(db, rec["id"], "succeeded")
        assert done["result"] == {"fCntDown": 4}
        assert [e["action"] for e in done["events"]][:5] == ["request", "queue", "send",
                                                             "receive", "ok"]
        # a confirmed downlink that times out: ack without "acknowledged" (proto3 JSON omits false)
        stop = api.request(db, adapters, "pmp-cs", "stop", **OP)
        assert ns.down.get(timeout=30)[1]["id"] == str(stop["id"])
        ns.event("ack", {"queueItemId": str(stop["id"]), "fCntDown": 5})
        failed = wait_status(db, stop["id"], "failed")
        assert "did not acknowledge" in failed["reason"]
    finally:
        ns.close()


class ThingsStack(FakeServer):
    """Plays The Things Stack's MQTT server: takes down/push, publishes the outcome events."""

    def __init__(self, port: int) -> None:
        super().__init__(port, wf.ttn_push(TTS_APP, "+"), qos=0)  # the stack: QoS 0 only

    def event(self, event: str, doc: dict, dev: str = TTS_DEV) -> None:
        self.pub.publish(wf.ttn(TTS_APP, dev, event), {
            "end_device_ids": {"device_id": dev, "application_ids": {
                "application_id": TTS_APP.split("@")[0]}}, **doc})

    def outcome(self, event: str, down: dict, dev: str = TTS_DEV, **extra) -> None:
        body = {"downlink": down, **extra} if event == "failed" else down
        self.event(f"down/{event}", {"correlation_ids": down.get("correlation_ids", []),
                                     f"downlink_{event}": body}, dev)


def test_the_things_stack_push_lands_on_the_device_topic_and_outcomes_settle_it(
        db, adapters, adapter_worker):
    ts = ThingsStack(adapters.mqtt.port)
    try:
        now = datetime.now(UTC).isoformat()
        ts.event("up", {"received_at": now, "uplink_message": {
            "f_port": 2, "f_cnt": 1, "decoded_payload": {"sump_level_m": 1.2}}})
        assert heard(db, "pmp-tts") == ("ttn", TTS_DEV, TTS_APP)
        rec = api.request(db, adapters, "pmp-tts", "start", {"flow_m3_h": 700}, **OP)
        topic, body = ts.down.get(timeout=30)
        assert topic == f"v3/{TTS_APP}/devices/{TTS_DEV}/down/push"
        mine = f"citypulse:{rec['id']}"
        assert body == {"downlinks": [{
            "f_port": 10, "decoded_payload": {"method": "start", "params": {"flow_m3_h": 700.0}},
            "confirmed": True, "priority": "NORMAL", "correlation_ids": [mine]}]}
        assert records.get(db, rec["id"])["status"] == "sent"
        ids = ["as:downlink:01JE0", mine]  # the stack adds its own ids to ours
        # no command named, and another device naming ours: both change nothing
        ts.outcome("ack", {"correlation_ids": ["as:downlink:01JE1"]})
        ts.outcome("ack", {"correlation_ids": ids}, dev="pump-ttn-8")
        ts.outcome("sent", {"f_port": 10, "f_cnt": 4, "correlation_ids": ids})
        wait_status(db, rec["id"], "delivered")
        ts.outcome("nack", {"correlation_ids": ids}, dev="pump-ttn-8")
        ts.outcome("ack", {"f_port": 10, "f_cnt": 4, "correlation_ids": ids})
        done = wait_status(db, rec["id"], "succeeded")
        assert done["result"] == {"f_cnt": 4}
        assert [e["action"] for e in done["events"]][:5] == ["request", "queue", "send",
                                                             "receive", "ok"]
        # the device rejects one (nack), the stack cannot schedule another (failed)
        for event, extra, reason in (
                ("nack", {}, "nack"),
                ("failed", {"error": {"name": "no_gateway",
                                      "message_format": "no gateway available"}},
                 "no gateway available")):
            other = api.request(db, adapters, "pmp-tts", "stop", **OP)
            down = ts.down.get(timeout=30)[1]["downlinks"][0]
            assert down["correlation_ids"] == [f"citypulse:{other['id']}"]
            ts.outcome(event, down, **extra)
            failed = wait_status(db, other["id"], "failed")
            assert reason in failed["reason"]
        assert records.get(db, rec["id"])["status"] == "succeeded"
    finally:
        ts.close()
