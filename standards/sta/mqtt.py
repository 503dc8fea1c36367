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

The relay's MQTT session is persistent (clean start off, session expiry), so announcements
made while it is away are delivered when it comes back; a lost broker is retried by paho's
loop with capped backoff.  A message that is not the committed format is logged and
counted (:attr:`Relay.bad`), never raised.  Delivery is at least once: a subscriber may see
an observation twice (same ``@iot.id``), e.g. after a redelivery to a collector.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterable
from datetime import timedelta

import orjson

from citypulse.settings import Settings
from citypulse.wire import committed as wc
from citypulse.wire import topics as wt
from citypulse.wire.session import Session
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
    """Committed batches in, SensorThings Observations out (see the module doc)."""

    def __init__(self, settings: Settings, client_id: str = "citypulse-sta-mqtt") -> None:
        self.base = settings.web_url + PREFIX
        self.entity_set = settings.sta_mqtt_entity_set
        self.received = self.published = self.bad = 0
        self.session = Session(settings.mqtt_url, client_id, [wt.committed(settings.topic_prefix)],
                               self._on_message, ca_file=settings.mqtt_ca_file, connect=False)

    def start(self) -> None:
        """Connect and subscribe in the background (retried until the broker is there)."""
        self.session.start()

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """Wait until connected and subscribed."""
        return self.session.wait_connected(timeout)

    def stop(self) -> None:
        """Disconnect (the session and what is queued for it stay on the broker)."""
        self.session.close()

    def _on_message(self, topic: str, payload: bytes, _props: object) -> None:
        self.received += 1
        try:
            readings = wc.decode(payload)
        except wc.FormatError as exc:
            self.bad += 1
            log.warning("event=bad_message topic=%s bytes=%d error=%r", topic, len(payload),
                        str(exc)[:200])
            return
        try:
            out = messages(readings, self.base, self.entity_set)
        except Exception:  # nothing raises at the message boundary
            self.bad += 1
            log.exception("event=internal_error where=render topic=%s", topic)
            return
        for t, body in out:
            self.session.publish(t, body, qos=1)
        self.published += len(out)


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
