"""``citypulse bench hotpath``: the collector's per-reading Python work, part by part, as JSON.

In-process and single-threaded, no broker and no database: the same prebuilt payloads as
``bench ingest`` (:mod:`bench.wirefeed`'s shape: 2 values per reading, gateway messages of
``per_message`` readings or single telemetry messages, JSON or MessagePack) go through

- ``decode``: the typed msgspec decode alone (the floor both pipelines share);
- ``bare``: the bare pipeline's ``on_message`` (:mod:`bench.bare`: decode, one row tuple
  per reading with its datetime);
- ``rows``: the collector's :func:`ingest.fastdecode.rows` (decode, registry and gateway
  check, clock window, per-value catalogue range check, row tuples): for JSON its C pass;
- ``rows_typed``: the same through msgspec and Python (MessagePack's path, and JSON's
  when the C pass is not built or leaves a message to it);
- ``seq``: the collector's seq-gap accounting (:func:`ingest.writer.count_seq`) of the rows,
  every sensor seen before (the steady state);
- ``paho_publish`` / ``publish``: one received MQTT 5 PUBLISH packet of each message turned
  into the message handed to ``on_message``, by paho's own client (what the bare pipeline
  runs) and by the collector's (:class:`ingest.mqttfast.BufferedClient`).

Out: microseconds per reading, best of ``repeat`` passes, and the guarantees' cost
(``rows - bare`` and ``seq``).  Where these differ from ``bench ingest --baseline``'s
end-to-end figures, the difference is paho, the hand-off between threads, COPY and commit.
"""

from __future__ import annotations

import time

import msgspec
import orjson
import paho.mqtt.client as mqtt

from bench.bare import Bare
from bench.wirefeed import VALUES, publish_parts, publish_props, publish_topic
from citypulse.settings import Settings
from citypulse.wire import payload as wp
from citypulse.wire import topics as wt
from ingest import fastdecode
from ingest.mqttfast import BufferedClient
from ingest.registry import Registered
from ingest.validate import Window
from ingest.writer import count_seq

PREFIX = "citypulse"


class _Msg:
    __slots__ = ("payload", "topic")

    def __init__(self, topic: str, payload: bytes) -> None:
        self.topic, self.payload = topic, payload


def _payloads(per_message: int, sensors: list[str], messages: int, now_ms: int,
              msgpack: bool) -> list[tuple[str, bytes]]:
    enc = msgspec.msgpack.encode if msgpack else orjson.dumps
    out = []
    for k in range(messages):
        chunk = [sensors[(k * per_message + j) % len(sensors)] for j in range(per_message)]
        items = {sid: [{"ts": now_ms - messages + k, "seq": k, "values": VALUES}]
                 for sid in chunk}
        if per_message == 1:
            out.append((wt.telemetry(chunk[0], PREFIX), enc(items[chunk[0]][0])))
        else:
            out.append((wt.gateway("gw-0", PREFIX), enc(items)))
    return out


def _publish_parts(msgs: list[tuple[str, bytes]], msgpack: bool) -> list[tuple[int, bytes]]:
    """Each message as a received PUBLISH: (fixed header byte, the rest after the length)."""
    props = publish_props(msgpack)
    return [publish_parts(publish_topic(t), p, 1, k % 65535 + 1, props)
            for k, (t, p) in enumerate(msgs)]


def _receiver(cls) -> tuple[mqtt.Client, list]:
    """A client whose ``on_message`` keeps the messages (for the check) or drops them (timed)."""
    c = cls(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, manual_ack=True)
    got: list = []
    c.on_message = lambda _c, _u, m: got.append(m)
    return c, got


def _drop(_c, _u, _m) -> None:
    """``on_message`` while timing: nothing kept, as a collector hands each message on."""


def _best(fn, repeat: int, n: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return round(best / n * 1e6, 3)


def run(per_message: int = 100, readings: int = 200_000, encoding: str = "json",
        repeat: int = 7) -> dict:
    """Per-reading microseconds of each part (see the module docstring)."""
    msgpack = encoding == "msgpack"
    sensors = [f"hp-{i:05d}" for i in range(max(per_message, 2000))]
    gw = None if per_message == 1 else "gw-0"
    registry = {sid: Registered(i + 1, "traffic", gw) for i, sid in enumerate(sensors)}
    now_ms = int(time.time() * 1000)
    msgs = _payloads(per_message, sensors, max(1, readings // per_message), now_ms, msgpack)
    n = len(msgs) * per_message
    ctype = wp.CONTENT_MSGPACK if msgpack else None
    parsed = [(wt.parse(t, PREFIX), p) for t, p in msgs]
    window = Window.of(now_ms, Settings())
    bare = Bare({"prefix": PREFIX, "sensor_ids": sensors, "encoding": encoding})
    bare_msgs = [_Msg(t, p) for t, p in msgs]
    dec = fastdecode._DECODERS[("telemetry" if per_message == 1 else "gateway", msgpack)]

    def decode() -> None:
        for _t, p in parsed:
            dec.decode(p)

    def bare_path() -> None:
        bare.rows = []
        for m in bare_msgs:
            bare.on_message(None, None, m)

    rows: list[tuple] = []

    def rows_path() -> None:
        rows.clear()
        times: dict = {}
        for topic, p in parsed:
            rows.extend(fastdecode.rows(p, topic, now_ms, ctype, registry, window, times))

    def typed_path() -> None:
        rows.clear()
        times: dict = {}
        for topic, p in parsed:
            rows.extend(fastdecode._typed(p, topic, now_ms, dec, registry, window.oldest_ms,
                                          window.newest_ms, times))

    typed_path()
    typed = list(rows)
    rows_path()
    if len(rows) != n or bare.errors or rows != typed:
        raise RuntimeError("hotpath: the payloads did not all decode, or the paths differ")
    packets = _publish_parts(msgs, msgpack)
    receivers = {"paho_publish": _receiver(mqtt.Client), "publish": _receiver(BufferedClient)}

    def publish(name: str):
        client, got = receivers[name]

        def run_() -> None:
            got.clear()
            for cmd, body in packets:
                client._in_packet = {"command": cmd, "packet": bytearray(body)}
                client._handle_publish()
        return run_

    for name, (client, got) in receivers.items():  # both hand on_message the same messages
        publish(name)()
        ctypes = [getattr(m.properties, "ContentType", None) for m in got]
        if [(m.topic, bytes(m.payload), m.mid) for m in got] != [
                (t, p, k % 65535 + 1) for k, (t, p) in enumerate(msgs)] or ctypes != [
                wp.CONTENT_MSGPACK if msgpack else None] * len(got):
            raise RuntimeError("hotpath: a PUBLISH did not parse back to its message")
        got.clear()
        client.on_message = _drop
    ids = [r.id for r in registry.values()]  # seq accounting's steady state: all seen before
    out = {"per_message": per_message, "encoding": encoding, "readings": n,
           "us_per_reading": {
               "decode": _best(decode, repeat, n), "bare": _best(bare_path, repeat, n),
               "rows": _best(rows_path, repeat, n), "rows_typed": _best(typed_path, repeat, n),
               "seq": _best(lambda: count_seq(dict.fromkeys(ids, -1), dict.fromkeys(ids, -1),
                                              rows), repeat, n),
               "paho_publish": _best(publish("paho_publish"), repeat, n),
               "publish": _best(publish("publish"), repeat, n)}}
    us = out["us_per_reading"]
    out["guarantees_us"] = {"validation_and_rows_vs_bare": round(us["rows"] - us["bare"], 3),
                            "seq_accounting": us["seq"],
                            "publish_vs_paho": round(us["publish"] - us["paho_publish"], 3)}
    return out
