"""Commands through the source adapters' downlinks: ThingsBoard gateway RPC (driven by
ThingsBoard's own gateway SDK) and the ChirpStack v4 downlink queue, against the real broker,
collector, PostgreSQL and commands worker."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
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


@pytest.fixture
def adapters(ctl_settings, start_collector):  # noqa: F811
    cfg = ctl_settings.model_copy(update={"sources": ["thingsboard", "chirpstack"],
                                          "writer_connections": 1})
    with psycopg.connect(cfg.database_url, autocommit=True) as c:
        for sid, kind, props in (("vms-tb", "sign", {"thingsboard_device": "VMS North"}),
                                 ("pmp-cs", "pump", {"chirpstack_device": EUI}),
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


class NetworkServer:
    """Plays ChirpStack's MQTT integration: takes downlinks, publishes their outcomes."""

    def __init__(self, port: int) -> None:
        self.down: queue.Queue[tuple[str, dict]] = queue.Queue()
        self.sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        ready = threading.Event()
        self.sub.on_connect = lambda c, *_: c.subscribe(wf.chirpstack_down(APP, "+"), 1)
        self.sub.on_subscribe = lambda *_: ready.set()
        self.sub.on_message = lambda _c, _u, m: self.down.put((m.topic, orjson.loads(m.payload)))
        self.sub.connect("127.0.0.1", port)
        self.sub.loop_start()
        assert ready.wait(10)
        self.pub = Publisher(port)

    def event(self, event: str, doc: dict) -> None:
        self.pub.publish(wf.chirpstack(APP, EUI, event), {
            "deviceInfo": {"applicationId": APP, "devEui": EUI}, **doc})

    def close(self) -> None:
        self.sub.loop_stop()
        self.sub.disconnect()
        self.pub.close()


def test_chirpstack_downlink_lands_on_the_queue_topic_and_acks_settle_it(db, adapters,
                                                                         adapter_worker):
    ns = NetworkServer(adapters.mqtt.port)
    try:
        # an uplink (no event besides the reading) teaches the route and the sump level
        ns.event("up", {"fCnt": 1, "fPort": 2, "object": {"sump_level_m": 1.2}})
        assert wait_for(lambda: route(db, "pmp-cs"), 30) == ("chirpstack", EUI, APP)
        assert wait_for(lambda: db.execute(
            "SELECT count(*) FROM citypulse.raw r JOIN citypulse.sensors s ON s.id = r.sensor "
            "WHERE s.sensor_id = 'pmp-cs'").fetchone()[0] == 1, 30)
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
