"""A paho-mqtt publisher driven by its caller's loop, with a bound on QoS 1 messages in flight.

In: the settings' broker URL, a client id, an optional last will.  Out: :class:`Publisher`
with ``publish(topic, payload, qos, retain)`` (never raises; failures are counted in
``errors``), ``pump()`` to drive network I/O, ``drain()`` to wait for QoS 1 acknowledgements,
and an optional :class:`Recorder` that writes every message sent to Parquet (topic, payload,
time offset, qos, retain).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pyarrow as pa
import pyarrow.parquet as pq
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from citypulse.settings import MqttEndpoint
from device_sim import encode

log = logging.getLogger(__name__)

RECORD_SCHEMA = pa.schema([
    ("offset_s", pa.float64()), ("topic", pa.string()), ("payload", pa.binary()),
    ("qos", pa.int8()), ("retain", pa.bool_()), ("worker", pa.int16()), ("n", pa.int64()),
])


class Recorder:
    """Appends sent messages to a Parquet file in row groups."""

    def __init__(self, path: Path, worker: int = 0, flush_every: int = 50_000) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.worker = worker
        self.flush_every = flush_every
        self.rows: dict[str, list] = {k: [] for k in RECORD_SCHEMA.names}
        self.n = 0
        self.writer = pq.ParquetWriter(str(self.path), RECORD_SCHEMA)

    def add(self, offset_s: float, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        """Remember one message."""
        r = self.rows
        r["offset_s"].append(offset_s)
        r["topic"].append(topic)
        r["payload"].append(payload)
        r["qos"].append(qos)
        r["retain"].append(retain)
        r["worker"].append(self.worker)
        r["n"].append(self.n)
        self.n += 1
        if len(r["n"]) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Write what is buffered."""
        if self.rows["n"]:
            self.writer.write_table(pa.table(self.rows, schema=RECORD_SCHEMA))
            self.rows = {k: [] for k in RECORD_SCHEMA.names}

    def close(self) -> None:
        """Flush and close the file."""
        self.flush()
        self.writer.close()


class Publisher:
    """One MQTT connection; publish without blocking beyond the in-flight bound."""

    def __init__(self, url: str, client_id: str, *, will: tuple[str, bytes] | None = None,
                 max_inflight: int = 200, ca_file: Path | None = None,
                 recorder: Recorder | None = None, t0: float | None = None,
                 encoding: str = "json") -> None:
        self.endpoint = MqttEndpoint(url)
        self.encoding = encoding  # msgpack: JSON payloads sent as MessagePack (MQTT 5)
        if encoding == "json":
            self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                      clean_session=True, protocol=mqtt.MQTTv311)
        else:  # the content type is an MQTT 5 property
            self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                      protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(max_inflight)
        self.client.max_queued_messages_set(0)
        self.max_inflight = max_inflight
        self.outstanding = 0
        self.sent = 0
        self.errors = 0
        self.recorder = recorder
        self.t0 = time.monotonic() if t0 is None else t0
        if self.endpoint.username:
            self.client.username_pw_set(self.endpoint.username, self.endpoint.password)
        if self.endpoint.tls:
            self.client.tls_set(ca_certs=str(ca_file) if ca_file else None)
        if will:
            self.client.will_set(will[0], will[1], qos=1, retain=True)
        self.client.on_publish = self._on_publish

    def _on_publish(self, client, userdata, mid, reason_code=None, properties=None) -> None:
        self.outstanding = max(0, self.outstanding - 1)

    def connect(self, timeout: float = 10.0, retry_s: float = 60.0) -> None:
        """Connect and wait for the CONNACK; raises ConnectionError if the broker refuses.

        A broker not reachable yet (refused, reset, unreachable) is retried with capped
        backoff (0.2 s doubling to 5 s) for ``retry_s``, each attempt logged.
        """
        delay = 0.2
        give_up = time.monotonic() + retry_s
        while True:
            try:
                self.client.connect(self.endpoint.host, self.endpoint.port, keepalive=30)
                break
            except OSError as exc:
                if time.monotonic() + delay > give_up:
                    raise
                log.warning("broker %s:%s not reachable (%s); retrying in %.1f s",
                            self.endpoint.host, self.endpoint.port, exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        deadline = time.monotonic() + timeout
        while not self.client.is_connected():
            self.client.loop(0.05)
            if time.monotonic() > deadline:
                raise ConnectionError(f"no CONNACK from {self.endpoint} after {timeout}s")

    def pump(self, timeout: float = 0.0) -> None:
        """Drive network I/O once; reconnect if the connection dropped."""
        rc = self.client.loop(timeout)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            self.errors += 1
            try:
                time.sleep(0.2)
                self.client.reconnect()
                self.outstanding = 0
            except OSError as exc:
                log.warning("reconnect failed: %s", exc)

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> bool:
        """Send one message (waiting while too many QoS 1 messages are unacknowledged)."""
        if qos:
            spins = 0
            while self.outstanding >= self.max_inflight:
                self.pump(0.01)
                spins += 1
                if spins > 3000:  # 30 s without acks: give up on this one
                    self.errors += 1
                    return False
        props = None
        if self.encoding != "json":
            payload, ctype = encode.payload(payload, self.encoding)
            if ctype:
                props = Properties(PacketTypes.PUBLISH)
                props.ContentType = ctype
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self.errors += 1
            if info.rc == mqtt.MQTT_ERR_NO_CONN:
                self.pump(0.0)
            return False
        if qos:
            self.outstanding += 1
        self.sent += 1
        if self.recorder is not None:
            self.recorder.add(time.monotonic() - self.t0, topic, payload, qos, retain)
        return True

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until QoS 1 messages are acknowledged (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump(0.01)
            if self.outstanding == 0 and not self.client.want_write():
                return

    def close(self) -> None:
        """Drain, disconnect cleanly (no last will) and close the recorder."""
        self.drain()
        self.client.disconnect()
        self.client.loop(0.05)
        if self.recorder is not None:
            self.recorder.close()
