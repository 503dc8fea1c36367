"""Downlink modules without a broker: request shapes, answers, malformed input never raises."""

import uuid

import orjson
import pytest

from control import downlinks
from control.downlinks import Answer, Route
from ingest.credentials import SourceAccount, acl_text

TB = downlinks.get("thingsboard")
CS = downlinks.get("chirpstack")
TTN = downlinks.get("ttn")
REC = {"id": uuid.UUID("0b0b0b0b-0000-4000-8000-000000000001"), "seq": 42, "method": "show",
       "params": {"text": "Flood"}}


def test_registry_names_its_downlinks():
    assert {d.name for d in downlinks.available()} == {"thingsboard", "chirpstack", "ttn"}
    with pytest.raises(KeyError, match="known: thingsboard, chirpstack, ttn"):
        downlinks.get("http")


def test_thingsboard_rpc_request_and_replies():
    topic, body = TB.request(REC, Route("thingsboard", "VMS North", None))
    assert topic == "v1/gateway/rpc" and TB.claims(topic)
    assert orjson.loads(body) == {"device": "VMS North", "data": {
        "id": 42, "method": "show", "params": {"text": "Flood"}}}
    assert TB.answers(topic, body) == []  # our own request, heard back on the shared topic
    ok = orjson.dumps({"device": "VMS North", "id": 42, "data": {"shown": True}})
    assert TB.answers(topic, ok) == [Answer("seq", 42, "VMS North", "ok", {"shown": True})]
    err = orjson.dumps({"device": "VMS North", "id": "42", "data": {"error": "no power"}})
    assert TB.answers(topic, err) == [Answer("seq", 42, "VMS North", "error",
                                             {"error": "no power"}, "no power")]
    plain = orjson.dumps({"device": "d", "id": 7, "data": "done"})
    assert TB.answers(topic, plain)[0].result == {"value": "done"}
    for bad in (b"{not json", b"[1]", b'{"id": 1, "data": {}}', b'{"device": "d", "id": true}',
                b'{"device": "d", "id": "x"}', b"\xff" * 10):
        assert TB.answers(topic, bad) == [], bad


def test_chirpstack_queue_request_and_outcomes():
    route = Route("chirpstack", "a84041000181c061", "app-1")
    topic, body = CS.request(REC, route)
    assert topic == "application/app-1/device/a84041000181c061/command/down"
    assert orjson.loads(body) == {"id": str(REC["id"]), "devEui": "a84041000181c061",
                                  "confirmed": True, "fPort": 10,
                                  "object": {"method": "show", "params": {"text": "Flood"}}}
    with pytest.raises(ValueError, match="no application id yet"):
        CS.request(REC, Route("chirpstack", "a84041000181c061", None))
    ev = "application/app-1/device/a84041000181c061/event/"
    assert CS.claims(ev + "ack") and CS.claims(ev + "txack") and not CS.claims(ev + "up")
    qid = str(REC["id"])
    assert CS.answers(ev + "txack", orjson.dumps({"queueItemId": qid, "fCntDown": 3})) == [
        Answer("uuid", qid, "a84041000181c061", "received", {"fCntDown": 3})]
    assert CS.answers(ev + "ack", orjson.dumps({"queueItemId": qid, "acknowledged": True})
                      )[0].status == "ok"
    timed_out = CS.answers(ev + "ack", orjson.dumps({"queueItemId": qid}))[0]
    assert timed_out.status == "error" and "did not acknowledge" in timed_out.reason
    for t, bad in ((ev + "ack", b"{not json"), (ev + "ack", b'{"acknowledged": true}'),
                   (ev + "up", orjson.dumps({"queueItemId": qid})), (ev + "ack", b"[]")):
        assert CS.answers(t, bad) == [], (t, bad)


def test_ttn_push_request_and_outcomes():
    topic, body = TTN.request(REC, Route("ttn", "pump-7", "app1@tenant1"))
    assert topic == "v3/app1@tenant1/devices/pump-7/down/push"
    assert orjson.loads(body) == {"downlinks": [{
        "f_port": 10, "decoded_payload": {"method": "show", "params": {"text": "Flood"}},
        "confirmed": True, "priority": "NORMAL",
        "correlation_ids": [f"citypulse:{REC['id']}"]}]}
    with pytest.raises(ValueError, match="no application yet"):
        TTN.request(REC, Route("ttn", "pump-7", None))
    ev = "v3/app1@tenant1/devices/pump-7/down/"
    assert all(TTN.claims(ev + e) for e in ("sent", "ack", "nack", "failed"))
    assert not any(TTN.claims(t) for t in (ev + "push", ev + "queued", "v3/a@t/devices/d/up"))
    cid = str(REC["id"])
    ids = ["as:downlink:01HX", f"citypulse:{cid}"]

    def said(event, down):
        key = "downlink_" + event
        doc = {key: {"downlink": down, "error": {"name": "no_gateway",
                                                  "message_format": "no gateway available"}}
               if event == "failed" else down}
        return TTN.answers(ev + event, orjson.dumps({"end_device_ids": {"device_id": "pump-7"},
                                                     "correlation_ids": ids, **doc}))

    assert said("sent", {"f_cnt": 3, "correlation_ids": ids}) == [
        Answer("uuid", cid, "pump-7", "received", {"f_cnt": 3})]
    assert said("ack", {"correlation_ids": ids}) == [Answer("uuid", cid, "pump-7", "ok", {})]
    nack = said("nack", {"correlation_ids": ids})[0]
    assert nack.status == "error" and "nack" in nack.reason
    failed = said("failed", {"correlation_ids": ids})[0]
    assert failed.status == "error" and "no gateway available" in failed.reason
    # the outer correlation ids are enough when the downlink body has none
    assert TTN.answers(ev + "ack", orjson.dumps({"correlation_ids": ids, "downlink_ack": {}})
                       )[0].value == cid
    for t, bad in ((ev + "ack", b"{not json"), (ev + "ack", b"[]"), (ev + "ack", b"{}"),
                   (ev + "ack", orjson.dumps({"downlink_ack": {"correlation_ids": ["as:x"]}})),
                   (ev + "ack", orjson.dumps({"correlation_ids": ["citypulse:not-a-uuid"]})),
                   (ev + "ack", orjson.dumps({"downlink_ack": "x", "correlation_ids": 3})),
                   ("v3/a@t/devices/d/up", orjson.dumps({"correlation_ids": ids}))):
        assert TTN.answers(t, bad) == [], (t, bad)


def test_acl_grants_downlink_topics_to_worker_gateway_and_network_server():
    acl = acl_text([], "city", [SourceAccount.parse("thingsboard:gw-north"),
                                SourceAccount.parse("chirpstack:cs-ns=app-1"),
                                SourceAccount.parse("ttn:tts=app1@tenant1")])
    blocks: dict[str, list[str]] = {}
    user = ""
    for line in acl.splitlines():
        if line.startswith("user "):
            user = line
        elif line.startswith("topic ") and user:
            blocks.setdefault(user, []).append(line)
    worker = "\n".join(blocks["user commands"])
    assert "topic readwrite v1/gateway/rpc" in worker
    assert "topic write application/+/device/+/command/down" in worker
    assert "topic read application/+/device/+/event/ack" in worker
    assert "topic read application/+/device/+/event/txack" in worker
    assert {"topic write v1/gateway/rpc", "topic read v1/gateway/rpc"} <= set(
        blocks["user gw-north"])
    cs = set(blocks["user cs-ns"])
    assert {"topic read application/app-1/device/+/command/down",
            "topic write application/app-1/device/+/event/ack",
            "topic write application/app-1/device/+/event/txack"} <= cs
    assert not any("application/+/" in line for line in cs)
    assert "topic write v3/+/devices/+/down/push" in worker
    assert {f"topic read v3/+/devices/+/down/{e}" for e in ("sent", "ack", "nack", "failed")
            } <= set(blocks["user commands"])
    tts = set(blocks["user tts"])
    assert {"topic read v3/app1@tenant1/devices/+/down/push",
            "topic write v3/app1@tenant1/devices/+/down/ack",
            "topic write v3/app1@tenant1/devices/+/down/failed"} <= tts
    assert not any("v3/+/" in line for line in tts)
