"""``citypulse bench sim``: the simulator's maximum publish rate, per process and in total.

In: a broker URL (default: a private Mosquitto started here), seconds per measurement,
process count.  Out: a JSON-ready dict: for single-reading and batched (gateway) payloads at
QoS 0 and 1, messages/s and readings/s with one process and with all of them, plus the rate at
which one process generates and encodes readings.  Payloads are real simulator payloads
(behaviour model + wire encoding), pre-built so that the publish path alone is measured.
Nobody subscribes: the broker accepts (and at QoS 1 acknowledges) and discards.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from device_sim.behaviour import Fleet, due, readings
from device_sim.deploy import deploy
from device_sim.encode import encode_batch
from device_sim.mqtt import Publisher


def _payloads(sensors: int, per_message: int, prefix: str) -> tuple[list, float, float]:
    """(topic, payload, readings) messages, and generation+encoding readings/s, msgs/s."""
    dep = deploy(sensors, seed=1)
    fleet = Fleet.build(dep, seed=1)
    if per_message > 1:  # gateways of per_message sensors, all reporting in one window
        gw = np.array([f"gw-b{i // per_message:04d}" for i in range(len(fleet))], object)
        fleet.gateway_id = gw
    else:
        fleet.gateway_id = np.full(len(fleet), None, object)
    fleet.phase = fleet.phase / fleet.period * 10.0  # every sensor once per 10 s window
    fleet.period = np.full(len(fleet), 10.0)
    t0 = 1_764_000_000.0
    t = time.perf_counter()
    idx, k, ts = due(fleet, t0, t0 + 10)
    batch = readings(fleet, idx, k, ts)
    msgs = encode_batch(fleet, batch, prefix, gateway=per_message > 1)
    dt = time.perf_counter() - t
    return msgs, len(batch) / dt, len(msgs) / dt


def _publish_worker(url: str, msgs: list, qos: int, seconds: float, out: Any, slot: int,
                    go: Any) -> None:
    pub = Publisher(url, f"citypulse-bench-{os.getpid()}-{slot}", max_inflight=200)
    pub.connect()
    go.wait(30)
    n = r = 0
    i = 0
    m = len(msgs)
    t0 = time.perf_counter()
    end = t0 + seconds
    while True:
        for _ in range(200):
            topic, payload, nr = msgs[i]
            i = (i + 1) % m
            if pub.publish(topic, payload, qos=qos):
                n += 1
                r += nr
        if time.perf_counter() >= end:
            break
        pub.pump(0.0)
    pub.drain(10)
    elapsed = time.perf_counter() - t0
    out[slot * 3: slot * 3 + 3] = [n, r, elapsed + 0 * pub.errors]
    pub.client.disconnect()


def _measure(url: str, msgs: list, qos: int, seconds: float, procs: int) -> dict:
    ctx = mp.get_context("spawn")
    out = ctx.Array("d", 3 * procs, lock=False)
    go = ctx.Event()
    ps = [ctx.Process(target=_publish_worker, args=(url, msgs, qos, seconds, out, s, go))
          for s in range(procs)]
    for p in ps:
        p.start()
    time.sleep(1.0 + 0.3 * procs)  # connections up
    go.set()
    for p in ps:
        p.join(seconds + 60)
    vals = list(out)
    n, r = sum(vals[0::3]), sum(vals[1::3])
    el = max(max(vals[2::3]), 1e-6)
    return {"processes": procs, "messages_per_s": round(n / el), "readings_per_s": round(r / el),
            "per_process_messages_per_s": round(n / el / procs)}


def bench(mqtt_url: str | None = None, seconds: float = 3.0, processes: int | None = None,
          batch: int = 100, sensors: int = 6000) -> dict:
    """Measure (see module docstring); starts a private Mosquitto unless ``mqtt_url``."""
    procs = processes or os.cpu_count() or 2
    single, gen_r, gen_m = _payloads(sensors, 1, "bench")
    batched, bgen_r, _ = _payloads(max(sensors, batch * 20), batch, "bench")
    result: dict[str, Any] = {
        "cores": os.cpu_count(), "seconds_per_measurement": seconds, "subscribers": 0,
        "generate_encode": {"single_readings_per_s": round(gen_r),
                            "single_messages_per_s": round(gen_m),
                            "batched_readings_per_s": round(bgen_r)},
        "single_payload_bytes": round(float(np.mean([len(p) for _, p, _ in single]))),
        "batched_payload_bytes": round(float(np.mean([len(p) for _, p, _ in batched]))),
        "readings_per_batched_message": round(float(np.mean([n for _, _, n in batched])), 1),
        "results": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        broker = None
        if mqtt_url is None:
            from citypulse.stack import PrivateMosquitto

            broker = PrivateMosquitto(Path(tmp) / "mqtt")
            broker.start()
            mqtt_url = broker.url
        result["broker"] = "private mosquitto" if broker else mqtt_url
        try:
            for mode, msgs in (("single", single), ("batched", batched)):
                for qos in (0, 1):
                    for n in sorted({1, procs}):
                        row = {"mode": mode, "qos": qos, **_measure(mqtt_url, msgs, qos,
                                                                    seconds, n)}
                        result["results"].append(row)
        finally:
            if broker:
                broker.stop()
    return result
