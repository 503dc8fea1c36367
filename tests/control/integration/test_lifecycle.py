"""Command lifecycle against a real broker, PostgreSQL, worker and simulated actuators."""

from __future__ import annotations

import threading

import orjson
import paho.mqtt.client as mqtt
import pytest

from citypulse.wire import topics
from control import api, policy, records

from ..conftest import wait_for, wait_status

OP = {"by": "ana", "role": "operator"}


def test_pump_start_succeeds_with_audit_trail_and_events(db, ctl_settings, fleet, worker, sims):
    got: list[dict] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    ready = threading.Event()
    sub.on_connect = lambda c, *_: c.subscribe(topics.command_events(ctl_settings.topic_prefix), 1)
    sub.on_subscribe = lambda *_: ready.set()
    sub.on_message = lambda _c, _u, m: got.append(orjson.loads(m.payload))
    sub.connect("127.0.0.1", ctl_settings.mqtt.port)
    sub.loop_start()
    assert ready.wait(10)
    dev = fleet.add("pmp-1", "pump")
    fleet.reading("pmp-1", sump_level_m=1.4)
    sim = sims([dev])
    rec = api.request(db, ctl_settings, "pmp-1", "start", {"flow_m3_h": 900}, alert_id=None, **OP)
    assert rec["status"] == "queued" and rec["params"] == {"flow_m3_h": 900.0}
    done = wait_status(db, rec["id"], "succeeded")
    assert done["result"]["running"] == 1.0 and done["result"]["flow_m3_h"] == 900.0
    assert done["attempts"] == 1 and done["delivered_at"] is not None
    actions = [e["action"] for e in done["events"]]
    assert actions[:5] == ["request", "queue", "send", "receive", "ok"], actions
    assert sim.executions() == {"pmp-1": 1}
    wait_for(lambda: any(e["command_id"] == str(rec["id"]) and e["status"] == "succeeded"
                         for e in got), 10, "the succeeded event on MQTT")
    sub.loop_stop()
    sub.disconnect()


def test_failed_high_risk_needs_a_second_person(db, ctl_settings, fleet, worker, sims):
    fleet.add("sig-1", "signal", segment_id="s1")
    sims([("sig-1", "signal")])
    rec = api.request(db, ctl_settings, "sig-1", "set_plan", {"plan": 7}, **OP)
    assert rec["status"] == "pending_approval"
    with pytest.raises(policy.PolicyError, match="cannot approve"):
        api.approve(db, ctl_settings, str(rec["id"]), by="ana", role="operator")
    with pytest.raises(policy.PolicyError, match="may not command"):
        api.approve(db, ctl_settings, str(rec["id"]), by="vic", role="viewer")
    assert records.get(db, rec["id"])["status"] == "pending_approval"
    [ok] = api.approve(db, ctl_settings, str(rec["id"]), by="bo", role="operator")
    assert ok["status"] == "queued" and ok["approved_by"] == "bo"
    done = wait_status(db, rec["id"], "failed")
    assert "plan 7 is not installed" in done["reason"]


def test_viewer_never_commands(db, ctl_settings, fleet):
    fleet.add("vms-1", "sign")
    with pytest.raises(policy.PolicyError):
        api.request(db, ctl_settings, "vms-1", "clear", by="vic", role="viewer")
    assert records.listing(db) == []


def test_preconditions_reject(db, ctl_settings, fleet):
    fleet.add("pmp-dry", "pump")
    fleet.reading("pmp-dry", sump_level_m=0.05)
    rec = api.request(db, ctl_settings, "pmp-dry", "start", **OP)
    assert rec["status"] == "rejected" and "sump dry" in rec["reason"]
    fleet.add("srn-1", "siren", zone_id="z9")
    rec = api.request(db, ctl_settings, "srn-1", "sound", {"pattern": "evacuate"}, **OP)
    assert rec["status"] == "rejected" and "no open critical alert in zone z9" in rec["reason"]
    assert [e["action"] for e in rec["events"]] == ["request", "reject"]
    with pytest.raises(api.ControlError, match="flow_m3_h"):
        api.request(db, ctl_settings, "pmp-dry", "start", {"flow_m3_h": 99999}, **OP)


def test_offline_device_expires_then_delivered_after_it_comes_back(
        db, ctl_settings, fleet, worker, sims):
    dev = fleet.add("pmp-off", "pump")
    fleet.reading("pmp-off", sump_level_m=2.0)
    sim = sims([dev], client_id="sim-pmp-off")
    sim.close()  # offline; the broker keeps its session and queues its commands
    short = api.request(db, ctl_settings, "pmp-off", "stop", expires_in_s=1.5, **OP)
    wait_status(db, short["id"], "expired")
    later = api.request(db, ctl_settings, "pmp-off", "start", expires_in_s=120, **OP)
    wait_status(db, later["id"], "sent")
    back = sims([dev], client_id="sim-pmp-off")
    done = wait_status(db, later["id"], "succeeded")
    assert done["result"]["running"] == 1.0
    assert back.ignored_expired == 1  # the expired command arrived too and was ignored
    assert back.executions() == {"pmp-off": 1}


def test_cancel_a_command_waiting_behind_another(db, ctl_settings, fleet, worker, sims):
    dev = fleet.add("vms-2", "sign")
    sim = sims([dev], client_id="sim-vms-2")
    sim.close()
    first = api.request(db, ctl_settings, "vms-2", "show", {"text": "FLOOD"}, **OP)
    wait_status(db, first["id"], "sent")
    second = api.request(db, ctl_settings, "vms-2", "clear", **OP)
    assert records.get(db, second["id"])["status"] == "queued"  # per-device order: waits
    [c] = api.cancel(db, ctl_settings, str(second["id"]), by="ana", role="operator")
    assert c["status"] == "cancelled"
    with pytest.raises(api.ControlError, match="only a command not yet sent"):
        api.cancel(db, ctl_settings, str(first["id"]), by="ana", role="operator")
    back = sims([dev], client_id="sim-vms-2")
    wait_status(db, first["id"], "succeeded")
    assert back.executions() == {"vms-2": 1}
    assert records.get(db, second["id"])["status"] == "cancelled"


def test_set_interval_through_the_shadow(db, ctl_settings, fleet, worker, sims):
    dev = fleet.add("pmp-sh", "pump")
    sim = sims([dev], client_id="sim-pmp-sh")
    sim.close()
    rec = api.request(db, ctl_settings, "pmp-sh", "set_interval", {"interval_s": 5}, **OP)
    wait_status(db, rec["id"], "sent")
    row = db.execute("SELECT desired, desired_version, reported_version FROM "
                     "citypulse.device_shadows WHERE device_id = 'pmp-sh'").fetchone()
    assert row == ({"interval_s": 5}, 1, 0)  # the delta is visible until the device reports
    back = sims([dev], client_id="sim-pmp-sh")  # reconnects: retained desired is applied
    wait_status(db, rec["id"], "succeeded")
    assert back.devices["pmp-sh"].interval_s == 5.0
    row = db.execute("SELECT reported, reported_version FROM citypulse.device_shadows "
                     "WHERE device_id = 'pmp-sh'").fetchone()
    assert row == ({"interval_s": 5.0}, 1)
