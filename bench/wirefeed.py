"""A wire-speed MQTT 5 load feeder: prebuilt PUBLISH packets written straight to a socket.

In: a JSON spec file (``python -m bench.wirefeed SPEC``; see :class:`FeedSpec`).  Out: one
JSON line on stdout at the end (messages, readings, acked, seconds, cpu_s, start_late_ms).
Protocol with the caller: after building every packet and connecting it prints ``ready``,
waits for a line on stdin (it says ``ready`` just before the first planned send time), then sends on schedule (``rate`` readings/s, 0 = as fast as the
broker takes them) with at most ``max_inflight`` unacknowledged QoS 1 messages.

Every payload (JSON, or MessagePack announced by the MQTT 5 content type) is encoded before
the clock starts, with the timestamps of its planned send time, so the feeder's CPU per
message is a slice and a ``send``: the generator is never what a benchmark measures.  Each
sensor's readings carry seqs 0, 1, 2, ... and strictly increasing timestamps, so a
consumer can count what was lost.  Shapes are those of :mod:`device_sim.loadgen`.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import sys
import time
from dataclasses import dataclass

import msgspec
import orjson

from bench import proccpu
from citypulse.wire import payload as wp
from citypulse.wire import topics as wt
from device_sim.loadgen import gateway_of

VALUES = {"vehicle_count": 7.0, "speed_kmh": 42.5}


@dataclass(frozen=True)
class FeedSpec:
    """What to send (the JSON spec file's keys)."""

    host: str
    port: int
    prefix: str
    sensor_ids: tuple[str, ...]
    rate: float                      # readings/s; 0 = as fast as acknowledged
    duration: float                  # seconds of schedule (rate > 0)
    per_message: int = 1
    encoding: str = "json"           # json | msgpack
    qos: int = 1
    max_inflight: int = 500
    readings: int = 0                # rate == 0: how many readings to send


def varint(n: int) -> bytes:
    """MQTT variable byte integer."""
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _s(text: str) -> bytes:
    b = text.encode()
    return len(b).to_bytes(2, "big") + b


def publish_props(msgpack: bool) -> bytes:
    """A PUBLISH's property bytes: the MQTT 5 content type of MessagePack, or none."""
    return (b"\x03" + _s(wp.CONTENT_MSGPACK)) if msgpack else b""


def publish_topic(topic: str) -> bytes:
    """A topic as a PUBLISH carries it (length-prefixed UTF-8)."""
    return _s(topic)


def connect_packet(client_id: str) -> bytes:
    """An MQTT 5 CONNECT (clean start, no keepalive, no properties)."""
    body = _s("MQTT") + bytes([5, 0x02]) + (0).to_bytes(2, "big") + varint(0) + _s(client_id)
    return b"\x10" + varint(len(body)) + body


def publish_parts(topic: bytes, payload: bytes, qos: int, packet_id: int,
                  props: bytes) -> tuple[int, bytes]:
    """An MQTT 5 PUBLISH as its fixed header byte and what follows the remaining length."""
    body = topic + (packet_id.to_bytes(2, "big") if qos else b"") + varint(len(props)) + props
    return 0x30 | (qos << 1), body + payload


def publish_packet(topic: bytes, payload: bytes, qos: int, packet_id: int,
                   props: bytes) -> bytes:
    """An MQTT 5 PUBLISH; ``topic`` already length-prefixed, ``props`` the property bytes."""
    header, rest = publish_parts(topic, payload, qos, packet_id, props)
    return bytes([header]) + varint(len(rest)) + rest


def build(spec: FeedSpec, t0_ms: int, count: int | None = None) -> tuple[list[bytes], list[int]]:
    """Every PUBLISH packet of the run (or the first ``count``) and readings per packet."""
    k = max(1, spec.per_message)
    ids = list(spec.sensor_ids)
    groups = []
    for g in range(0, len(ids), k):
        chunk = ids[g:g + k]
        topic = wt.telemetry(chunk[0], spec.prefix) if k == 1 else wt.gateway(
            gateway_of(g, k), spec.prefix)
        groups.append((_s(topic), chunk))
    per_s = spec.rate / k
    n_msgs = int(spec.duration * per_s) if spec.rate > 0 else -(-spec.readings // k)
    if count is not None:
        n_msgs = min(n_msgs, count)
    msgpack = spec.encoding == "msgpack"
    enc = msgspec.msgpack.encode if msgpack else orjson.dumps
    props = publish_props(msgpack)
    seq = dict.fromkeys(ids, 0)
    last = dict.fromkeys(ids, 0)
    packets: list[bytes] = []
    sizes: list[int] = []
    for i in range(n_msgs):
        topic, chunk = groups[i % len(groups)]
        ts = t0_ms + (int(i * 1000 / per_s) if per_s else 0)
        doc: dict = {}
        for sid in chunk:
            t = last[sid] = max(ts, last[sid] + 1)
            item = {"ts": t, "seq": seq[sid], "values": VALUES}
            seq[sid] += 1
            doc[sid] = [item]
        body = doc[chunk[0]][0] if k == 1 else doc
        packets.append(publish_packet(topic, enc(body), spec.qos, i % 65535 + 1, props))
        sizes.append(len(chunk))
    return packets, sizes


class _Acks:
    """Counts PUBACKs in the byte stream from the broker."""

    def __init__(self) -> None:
        self.buf = b""
        self.acked = self.failed = 0

    def feed(self, data: bytes) -> None:
        buf = self.buf + data
        pos = 0
        while len(buf) - pos >= 2:
            n, mult, j = 0, 1, pos + 1
            while j < len(buf):
                b = buf[j]
                n += (b & 0x7F) * mult
                mult <<= 7
                j += 1
                if not b & 0x80:
                    break
            else:
                break
            if len(buf) - j < n:
                break
            if buf[pos] >> 4 == 4:  # PUBACK
                self.acked += 1
                if n >= 3 and buf[j + 2] >= 0x80:
                    self.failed += 1
            pos = j + n
        self.buf = buf[pos:]


def feed(spec: FeedSpec, go=None, out=None) -> dict:
    """Build, connect, wait for ``go()``, send; the result dict (see module docstring)."""
    # calibrate the build time so the timestamps match the planned send times
    c0 = time.perf_counter()
    build(spec, 0, count=200)
    per = (time.perf_counter() - c0) / 200
    total = int(spec.duration * spec.rate / max(1, spec.per_message)) if spec.rate else 0
    t0_ms = int(time.time() * 1000 + (per * total * 1.5 + 1.0) * 1000)
    packets, sizes = build(spec, t0_ms)
    sock = socket.create_connection((spec.host, spec.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(connect_packet(f"wirefeed-{time.time_ns() % 10**9}"))
    first = sock.recv(65536)
    if not first or first[0] != 0x20 or first[3] != 0:
        raise ConnectionError(f"broker refused the connection: {first[:8]!r}")
    wait = t0_ms / 1000 - time.time() - 0.05
    if spec.rate and wait > 0:
        time.sleep(wait)
    if out is not None:
        print("ready", file=out, flush=True)
    if go is not None:
        go()
    late_ms = max(0.0, time.time() * 1000 - t0_ms) if spec.rate else 0.0
    cpu0 = proccpu.cpu(os.getpid())
    acks = _Acks()
    window = max(1, spec.max_inflight) if spec.qos else 1 << 30
    sent = 0
    n = len(packets)
    start = time.monotonic()
    msg_rate = spec.rate / max(1, spec.per_message)
    while sent < n:
        now = time.monotonic()
        due = n - sent if not msg_rate else int((now - start) * msg_rate) + 1 - sent
        room = window - (sent - acks.acked) if spec.qos else due
        take = min(due, room, 256)
        if take > 0:
            sock.sendall(b"".join(packets[sent:sent + take]))
            sent += take
        timeout = 0 if take > 0 else 0.001
        r, _, _ = select.select([sock], [], [], timeout)
        if r:
            data = sock.recv(1 << 20)
            if not data:
                raise ConnectionError("broker closed the connection")
            acks.feed(data)
    seconds = time.monotonic() - start
    deadline = time.monotonic() + 120
    while spec.qos and acks.acked < n and time.monotonic() < deadline:
        r, _, _ = select.select([sock], [], [], 0.05)
        if r:
            data = sock.recv(1 << 20)
            if not data:
                break
            acks.feed(data)
    cpu = proccpu.cpu(os.getpid()) - cpu0
    with contextlib.suppress(OSError):
        sock.sendall(b"\xe0\x00")  # DISCONNECT
        sock.close()
    return {"messages": n, "readings": sum(sizes), "acked": acks.acked if spec.qos else n,
            "failed": acks.failed, "seconds": round(seconds, 3), "cpu_s": round(cpu, 3),
            "start_late_ms": round(late_ms, 1)}


def main(argv: list[str]) -> None:
    """``python -m bench.wirefeed SPEC.json``: see the module docstring."""
    doc = json.loads(open(argv[0]).read())
    doc["sensor_ids"] = tuple(doc["sensor_ids"])
    spec = FeedSpec(**doc)
    result = feed(spec, go=sys.stdin.readline, out=sys.stdout)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
