"""A fault profile makes one simulated device lose a share of its commands (real broker)."""

from __future__ import annotations

import threading
import uuid

import orjson
import paho.mqtt.client as mqtt

from citypulse.wire import topics
from device_sim.actuators import ActuatorSim
from tests.support import wait_for

N = 40


def test_a_device_with_a_drop_profile_loses_a_share_of_its_commands(broker, topic_prefix):
    sim = ActuatorSim(broker.url, topic_prefix, [("vms-lossy", "sign"), ("vms-fine", "sign")],
                      client_id=f"sim-{topic_prefix}", delay_s=(0.01, 0.03),
                      drops={"vms-lossy": 0.5}, seed=7, telemetry=False)
    answers: dict[str, dict[str, str]] = {"vms-lossy": {}, "vms-fine": {}}
    lock = threading.Lock()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"ops-{topic_prefix}",
                    protocol=mqtt.MQTTv5)
    subscribed = threading.Event()

    def on_message(_c, _u, m):
        dev = topics.parse(m.topic, topic_prefix).ident
        body = orjson.loads(m.payload)
        with lock:
            if body["status"] in ("ok", "error"):
                answers[dev][body["id"]] = body["status"]

    c.on_message = on_message
    c.on_subscribe = lambda *_a: subscribed.set()
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    try:
        assert sim.session.wait_connected(10)
        c.subscribe([(topics.command_response(d, topic_prefix), 1) for d in answers])
        assert subscribed.wait(10)
        sent: dict[str, list[str]] = {d: [] for d in answers}
        for i in range(N):
            for dev in answers:
                cid = str(uuid.uuid4())
                sent[dev].append(cid)
                method = "show" if i % 2 == 0 else "clear"
                params = {"text": "FLOOD AHEAD"} if method == "show" else {}
                c.publish(topics.command(dev, topic_prefix), orjson.dumps(
                    {"id": cid, "method": method, "params": params}), qos=1)
        # every command is either answered or dropped on the device: nothing else
        assert wait_for(lambda: len(answers["vms-fine"]) == N and
                        len(answers["vms-lossy"]) + sim.dropped == N, 30)
        lossy = answers["vms-lossy"]
        assert 0 < sim.dropped < N, sim.dropped  # a share, not none and not all
        assert set(lossy) < set(sent["vms-lossy"])
        assert all(s == "ok" for s in lossy.values())
        assert sim.executions() == {"vms-lossy": N - sim.dropped, "vms-fine": N}
        assert set(answers["vms-fine"]) == set(sent["vms-fine"])  # the other device: all
    finally:
        c.loop_stop()
        c.disconnect()
        sim.close()


def test_timed_commands_run_out_after_their_duration(broker, topic_prefix):
    """A signal plan goes back to plan 1 and a siren stops once ``duration_s`` has passed."""
    import time

    sim = ActuatorSim(broker.url, topic_prefix, [("sig-t", "signal"), ("sir-t", "siren")],
                      client_id=f"sim-{topic_prefix}", telemetry=False)
    try:
        sig, sir = sim.devices["sig-t"], sim.devices["sir-t"]
        assert sim._apply(sig, "set_plan", {"plan": 9, "duration_s": 600}) is None
        assert sim._apply(sir, "sound", {"pattern": "alert", "duration_s": 60}) is None
        now = time.monotonic()
        sim._run_out(sig, now + 61)
        sim._run_out(sir, now + 61)
        assert sig.state["plan"] == 9.0 and sir.state["sounding"] == 0.0  # 60 s siren ran out
        sim._run_out(sig, now + 601)
        assert sig.state["plan"] == 1.0 and sig.state["cycle_s"] == 90.0
        assert sim._apply(sig, "set_plan", {"plan": 1}) is None and sig.until is None
    finally:
        sim.close()
