"""A minimal fast MQTT load generator for benchmarks and fault tests.

In: a :class:`LoadSpec` (broker, topic prefix, sensor ids, readings/s, readings per
message, duration, QoS).  Out: a :class:`LoadResult` (readings and messages sent and
acknowledged, per-sensor highest seq).  Each worker process drives its own paho loop (no
background thread; see FACTS.md), bounds its QoS 1 in-flight window, and numbers each
sensor's readings 0, 1, 2, ... so a consumer can count exactly what was lost::

    result = run_load(LoadSpec(host, port, "city", sensor_ids, rate=5000, duration=20))

With ``per_message == 1`` each reading goes to the sensor's own telemetry topic; with
``per_message = K > 1`` sensors are grouped K at a time behind gateway ``gw{i // K}`` and
each message carries one reading of each sensor of a gateway (see :func:`gateway_of`).
"""

from __future__ import annotations

import multiprocessing as mp
import time
import uuid
from dataclasses import dataclass, field

import orjson
import paho.mqtt.client as mqtt

from citypulse.wire import topics as wt
from device_sim.dialects import translate


@dataclass(frozen=True)
class LoadSpec:
    """What to send."""

    host: str
    port: int
    prefix: str
    sensor_ids: tuple[str, ...]
    rate: float                    # readings per second, all workers together
    duration: float                # seconds
    per_message: int = 1
    qos: int = 1
    workers: int = 1
    max_inflight: int = 200
    dialect: str = "native"        # or thingsboard | chirpstack | ttn (device_sim.dialects)


@dataclass(frozen=True)
class LoadResult:
    """What was sent: totals and each sensor's count (its seqs are 0 .. count-1)."""

    readings: int
    messages: int
    acked: int
    seconds: float
    per_sensor: dict[str, int] = field(default_factory=dict)


def gateway_of(index: int, per_message: int) -> str | None:
    """The gateway id of the ``index``-th sensor when messages carry ``per_message`` readings."""
    return None if per_message <= 1 else f"gw{index // per_message:06d}"


def gateway_doc(chunk: list[str], ts: int, seq: dict[str, int], last_ts: dict[str, int]
                ) -> dict[str, list[dict]]:
    """A gateway payload with the next reading of each sensor of ``chunk``.

    Seqs advance; per sensor ts strictly increases, since (sensor, time) is a key.
    """
    doc = {}
    for sid in chunk:
        t = last_ts[sid] = max(ts, last_ts[sid] + 1)
        doc[sid] = [{"ts": t, "seq": seq[sid], "values": {"vehicle_count": 7, "speed_kmh": 42.5}}]
        seq[sid] += 1
    return doc


def _worker(spec: LoadSpec, part: int, out: mp.Queue) -> None:
    groups: list[tuple[str, list[str]]] = []
    k = spec.per_message
    ids = list(spec.sensor_ids)
    for g in range(0, len(ids), max(1, k)):
        if (g // max(1, k)) % spec.workers != part:
            continue
        chunk = ids[g:g + max(1, k)]
        topic = (wt.telemetry(chunk[0], spec.prefix) if k <= 1
                 else wt.gateway(gateway_of(g, k), spec.prefix))
        groups.append((topic, chunk))
    seq = {sid: 0 for _, chunk in groups for sid in chunk}
    last_ts = dict.fromkeys(seq, 0)  # per-sensor strictly increasing ts: (sensor, time) is a key
    acked = 0
    inflight = 0

    def on_publish(client, userdata, mid, reason_code, properties) -> None:
        nonlocal acked, inflight
        acked += 1
        inflight -= 1

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"loadgen-{uuid.uuid4().hex[:8]}",
                    protocol=mqtt.MQTTv5)
    c.on_publish = on_publish
    c.max_inflight_messages_set(spec.max_inflight)
    c.max_queued_messages_set(0)
    c.connect(spec.host, spec.port, keepalive=60)
    while not c.is_connected():
        c.loop(0.05)
    readings_per_s = spec.rate / spec.workers
    msg_rate = readings_per_s / max(1, k)
    messages = readings = 0
    t0 = time.monotonic()
    end = t0 + spec.duration
    gi = 0
    while True:
        now = time.monotonic()
        if now >= end:
            break
        due = int((now - t0) * msg_rate) - messages
        if due <= 0 or (spec.qos and inflight >= spec.max_inflight):
            c.loop(0.001)
            continue
        ts = int(time.time() * 1000)
        for _ in range(min(due, 500)):
            topic, chunk = groups[gi]
            gi = (gi + 1) % len(groups)
            if k <= 1:
                sid = chunk[0]
                t = last_ts[sid] = max(ts, last_ts[sid] + 1)
                doc: object = {"ts": t, "seq": seq[sid],
                               "values": {"vehicle_count": 7, "speed_kmh": 42.5}}
                seq[sid] += 1
            else:
                doc = gateway_doc(chunk, ts, seq, last_ts)
            if spec.dialect == "native":
                c.publish(topic, orjson.dumps(doc), qos=spec.qos)
                inflight += 1 if spec.qos else 0
            else:
                for t_, p_, _n in translate(spec.dialect, [(topic, orjson.dumps(doc), len(chunk))],
                                            spec.prefix):
                    c.publish(t_, p_, qos=spec.qos)
                    inflight += 1 if spec.qos else 0
            messages += 1
            readings += len(chunk)
            if spec.qos and inflight >= spec.max_inflight:
                break
        c.loop(0)
    sent_s = time.monotonic() - t0
    wait_end = time.monotonic() + 30
    while spec.qos and inflight > 0 and time.monotonic() < wait_end:
        c.loop(0.01)
    c.disconnect()
    out.put(LoadResult(readings, messages, acked if spec.qos else messages, sent_s,
                       {s: n for s, n in seq.items() if n}))


def run_load(spec: LoadSpec) -> LoadResult:
    """Send the load with ``spec.workers`` processes; return the combined result."""
    if spec.workers == 1:
        q: mp.Queue = mp.Queue()
        _worker(spec, 0, q)
        return q.get()
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(spec, i, q), daemon=True)
             for i in range(spec.workers)]
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    for p in procs:
        p.join(10)
    per: dict[str, int] = {}
    for r in results:
        per.update(r.per_sensor)
    return LoadResult(sum(r.readings for r in results), sum(r.messages for r in results),
                      sum(r.acked for r in results), max(r.seconds for r in results), per)
