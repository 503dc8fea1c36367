"""SensorThings MQTT: each committed observation on ``v1.1/Datastreams(<id>)/Observations``.

In: the collectors' committed-batch messages (:func:`citypulse.wire.topics.committed`,
format :mod:`citypulse.wire.committed`; published only with ``CITYPULSE_STA_MQTT`` on, after
the batch is committed, never for a dead letter).  Out: per observation, its JSON exactly as
``GET /sta/v1.1/Observations(<id>)`` renders it (:func:`standards.sta.render.entity`), QoS 1,
not retained, on ``v1.1/Datastreams(<id>)/Observations`` (the standard's "receive updates"
topic of the Datastream's Observations) and, with ``sta_mqtt_entity_set``, on
``v1.1/Observations``.  Entry points::

    run_relay(settings)            # `citypulse sta mqtt`: blocks until SIGTERM/SIGINT
    r = Relay(settings); r.start(); ...; r.stop()      # in-process (tests)
    messages(readings, base)       # the pure part: readings -> [(topic, JSON bytes)]

The relay's MQTT session is persistent (clean start off, session expiry, manual acks), so
announcements made while it is away, or not relayed when it stopped, are delivered when it
comes back; a lost broker is retried by paho's loop with capped backoff.  A message that is
not the committed format is logged and counted (:attr:`Relay.bad`), never raised.  Delivery
is at least once: a subscriber may see an observation twice (same ``@iot.id``), e.g. after a
redelivery to a collector.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
from collections.abc import Iterable
from datetime import timedelta

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from citypulse.settings import Settings
from citypulse.wire import committed as wc
from citypulse.wire import topics as wt
from citypulse.wire.session import MAX_BACKOFF_S, SESSION_EXPIRY_S
from standards.sta import PREFIX
from standards.sta.model import ENTITIES, datastream_id, observation_id
from standards.sta.render import entity

log = logging.getLogger("citypulse.sta.mqtt")

OBSERVATIONS = ENTITIES["Observations"]
_MS = timedelta(milliseconds=1)


def messages(readings: Iterable[wc.Reading], base: str,
             entity_set: bool = False) -> list[tuple[str, bytes]]:
    """Readings -> ``(topic, Observation JSON)`` per non-null slot; ``base`` ends in ``/v1.1``."""
    out = []
    every = wt.sta_observations() if entity_set else None
    for r in readings:
        ms = (r.time - wc.EPOCH) // _MS
        for slot, value in enumerate(r.values):
            if value is None:
                continue
            ds = datastream_id(r.sensor, slot)
            row = {"id": observation_id(ds, ms), "phenomenonTime": r.time,
                   "resultTime": r.time, "result": value}
            body = orjson.dumps(entity(OBSERVATIONS, row, base))
            out.append((wt.sta_datastream_observations(ds), body))
            if every:
                out.append((every, body))
    return out


class Relay:
    """Committed batches in, SensorThings Observations out (see the module doc).

    paho's network thread only queues what arrives (MQTT 5 Receive Maximum bounds it); one
    worker thread renders and publishes, keeping at most ``inflight`` observations without
    their PUBACK, and acknowledges a committed batch only when every observation made from
    it has been acknowledged by the broker (so a relay that dies takes nothing with it).
    """

    def __init__(self, settings: Settings, client_id: str = "citypulse-sta-mqtt",
                 inflight: int = 1000) -> None:
        self.base = settings.web_url + PREFIX
        self.entity_set = settings.sta_mqtt_entity_set
        self.topic = wt.committed(settings.topic_prefix)
        self.endpoint = ep = settings.mqtt
        self.received = self.published = self.bad = 0
        self.inflight = self._limit = inflight
        self._unacked = 0       # observations published, PUBACK not yet back
        self._gen = 0           # connection generation: an ack goes only to its connection
        self._cond = threading.Condition()
        self._inbox: queue.Queue = queue.Queue()
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None
        c = self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                      protocol=mqtt.MQTTv5, manual_ack=True)
        if ep.username:
            c.username_pw_set(ep.username, ep.password)
        if ep.tls:
            c.tls_set(ca_certs=str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None)
        # paho's own in-flight bound scans its whole queue on every PUBACK: the worker bounds
        # what is in flight instead (to the broker's Receive Maximum too), paho does not
        c.max_inflight_messages_set(0)
        c.reconnect_delay_set(0.2, MAX_BACKOFF_S)
        c.on_connect = self._on_connect
        c.on_connect_fail = lambda *_a: log.warning(
            "event=connect_failed broker=%s:%s action=retry max_backoff_s=%d", ep.host, ep.port,
            MAX_BACKOFF_S)
        c.on_subscribe = lambda *_a: self._ready.set()
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish

    def start(self) -> None:
        """Connect and subscribe in the background (retried until the broker is there)."""
        self._worker = threading.Thread(target=self._work, name="sta-mqtt", daemon=True)
        self._worker.start()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        props.ReceiveMaximum = 16  # committed batches held here unacknowledged, at most
        self.client.connect_async(self.endpoint.host, self.endpoint.port, keepalive=15,
                                  clean_start=False, properties=props)
        self.client.loop_start()

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """Wait until connected and subscribed."""
        return self._ready.wait(timeout)

    @property
    def connected(self) -> bool:
        """Whether it is connected and subscribed now."""
        return self._ready.is_set()

    def stop(self) -> None:
        """Stop; what is not relayed yet stays on the broker for the next start."""
        self._stopping.set()
        if self._worker is not None:
            self._worker.join(10)
        self.client.disconnect()
        self.client.loop_stop()

    # --- paho callbacks (network thread): never raise, never block -------------------------
    def _on_connect(self, client, _u, flags, reason, props) -> None:
        if reason.is_failure:
            log.error("event=connect_refused broker=%s reason=%s", self.endpoint, reason)
            return
        self._limit = min(self.inflight, getattr(props, "ReceiveMaximum", 65535))
        self._gen += 1
        log.info("event=connected session_present=%s", flags.session_present)
        client.subscribe([(self.topic, mqtt.SubscribeOptions(qos=1))])

    def _on_disconnect(self, *_a) -> None:
        self._gen += 1  # the broker redelivers what this connection did not acknowledge
        self._ready.clear()
        if not self._stopping.is_set():
            log.warning("event=disconnected action=retry")

    def _on_message(self, _c, _u, msg) -> None:
        self._inbox.put((self._gen, msg.mid, msg.qos, msg.topic, msg.payload))

    def _on_publish(self, *_a) -> None:
        with self._cond:
            self._unacked -= 1
            self._cond.notify_all()

    # --- the worker -------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stopping.is_set():
            try:
                gen, mid, qos, topic, payload = self._inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                done = self._relay(topic, payload)
            except Exception:  # nothing raises at the message boundary
                self.bad += 1
                log.exception("event=internal_error where=relay topic=%s", topic)
                done = True
            if done and gen == self._gen:
                self.client.ack(mid, qos)

    def _relay(self, topic: str, payload: bytes) -> bool:
        """Publish one committed batch's observations; False when stopped half-way."""
        self.received += 1
        try:
            out = messages(wc.decode(payload), self.base, self.entity_set)
        except wc.FormatError as exc:
            self.bad += 1
            log.warning("event=bad_message topic=%s bytes=%d error=%r", topic, len(payload),
                        str(exc)[:200])
            return True
        step = max(1, self._limit // 4)
        for i in range(0, len(out), step):  # a few hundred at a time: few thread switches
            chunk = out[i:i + step]
            room = self._limit - len(chunk)
            if not self._wait(lambda: self._unacked <= room):  # noqa: B023 - called at once
                return False
            with self._cond:
                self._unacked += len(chunk)
            for t, body in chunk:
                self.client.publish(t, body, qos=1)
        self.published += len(out)
        return self._wait(lambda: self._unacked == 0)

    def _wait(self, ok) -> bool:
        with self._cond:
            while not ok():
                if self._stopping.is_set():
                    return False
                self._cond.wait(0.2)
        return True


def run_relay(settings: Settings) -> None:
    """Run the relay until SIGTERM/SIGINT."""
    if not settings.sta_mqtt:
        log.warning("CITYPULSE_STA_MQTT is off: collectors announce nothing, so nothing "
                    "will be relayed (set it for the collectors and this relay)")
    relay = Relay(settings)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_a: done.set())
    signal.signal(signal.SIGINT, lambda *_a: done.set())
    relay.start()
    print(f"sta mqtt: relaying {wt.committed(settings.topic_prefix)} to "
          f"{wt.sta_all()} on {settings.mqtt}", flush=True)
    while not done.wait(1.0):
        pass
    relay.stop()
    log.info("event=stopped received=%d published=%d bad=%d", relay.received,
             relay.published, relay.bad)
