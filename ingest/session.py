"""The collector's MQTT session: subscribe, receive into the inbox, ack after commit.

In: the settings (broker, topic prefix, share group, in-flight bound, device rate limit).
Out: :class:`~ingest.batcher.Message` records in :attr:`Session.inbox`; :meth:`Session.ack`
acknowledges them to the connection they came on (never to a later one).  MQTT 5, QoS 1,
persistent session (clean_start=False, session expiry), manual acks; the first connection
and every reconnection are retried with capped backoff by paho's loop, each failure logged.
Nothing raises out of a callback: unexpected exceptions are logged and counted.
"""

from __future__ import annotations

import logging
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from citypulse.settings import Settings
from citypulse.wire import topics as wt
from ingest.batcher import Inbox, Message
from ingest.metrics import Metrics
from ingest.mqttfast import BufferedClient
from ingest.sources.base import PAYLOAD
from ingest.sources.hub import SourceHub

log = logging.getLogger("citypulse.ingest")


class Session:
    """One MQTT connection's worth of receiving and acking."""

    def __init__(self, settings: Settings, client_id: str, metrics: Metrics,
                 sources: SourceHub | None = None) -> None:
        self.settings = settings
        self.sources = sources
        self.client_id = client_id
        self.metrics = metrics
        self.inbox = Inbox()
        self.accepting = threading.Event()
        self.client: mqtt.Client | None = None
        self.pending = 0  # received, not yet acked
        self._pending_lock = threading.Lock()
        self._below = threading.Condition(self._pending_lock)  # pending back to the bound
        self.max_pending = max(1, min(settings.max_inflight_messages, 65535))  # Receive Maximum
        self._overrun_logged = False
        self._buckets: dict[str, list[float]] = {}
        self._gen = 0
        self._gen_lock = threading.Lock()

    def connect(self) -> None:
        """Connect in the background (retried until it succeeds) and start the network loop."""
        s = self.settings
        self.client = c = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                      protocol=mqtt.MQTTv5, manual_ack=True)
        ep = s.mqtt
        if ep.username:
            c.username_pw_set(ep.username, ep.password)
        if ep.tls:
            c.tls_set(ca_certs=str(s.mqtt_ca_file) if s.mqtt_ca_file else None)
        c.reconnect_delay_set(0.2, 5)
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        c.hold = self._hold
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 7 * 86400
        props.ReceiveMaximum = self.max_pending
        c.connect_async(ep.host, ep.port, keepalive=30, clean_start=False, properties=props)
        c.loop_start()  # paho's loop retries the first connection too (retry_first_connection)

    def close(self) -> None:
        """Disconnect and stop the network loop."""
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every received message has been acked (or the timeout passes)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._pending_lock:
                if self.pending == 0:
                    return True
            time.sleep(0.02)
        return False

    def done(self, n: int) -> None:
        """``n`` messages will never be acked (an internal error): stop waiting for them."""
        self._settle(n)

    def _settle(self, n: int) -> None:
        """``n`` messages are off the books: wake a held network thread once back in bounds."""
        with self._pending_lock:
            self.pending -= n
            if self.pending <= self.max_pending:
                self._below.notify_all()

    def _hold(self, timeout: float) -> bool:
        """Whether the network thread should leave the socket unread (past the bound).

        A broker that ignores the Receive Maximum is held back by TCP instead: the backlog
        waits at the broker, and this process holds at most one packet past the bound.
        Waits up to ``timeout`` for acks to bring ``pending`` back first.
        """
        with self._below:
            if self.pending > self.max_pending and timeout > 0:
                self._below.wait(timeout)
            return self.pending > self.max_pending

    def ack(self, msgs: list[Message]) -> None:
        """Acknowledge messages whose content is stored, on the connection they came on."""
        client = self.client
        with self._gen_lock:
            gen = self._gen
            for m in msgs:
                if m.qos > 0 and m.gen == gen and client is not None:
                    client.ack(m.mid, m.qos)
        self._settle(len(msgs))
        self.metrics.queue.set(self.pending)

    # --- paho callbacks (network thread) ---------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        try:
            if reason_code.is_failure:
                log.warning("event=connect_refused reason=%r", reason_code)
                return
            with self._gen_lock:
                self._gen += 1
            subs = wt.ingest_subscriptions(self.settings.topic_prefix)
            if self.sources is not None:  # configured foreign sources, same shared group
                subs += self.sources.subscriptions()
            if self.settings.share_group:
                subs = [wt.shared(self.settings.share_group, t) for t in subs]
            client.subscribe([(t, SubscribeOptions(qos=1)) for t in subs])
            log.info("event=connected session_present=%s gen=%d subscriptions=%s",
                     flags.session_present, self._gen, subs)
        except Exception:
            log.exception("event=internal_error where=on_connect")
            self.metrics.internal.inc()

    def _on_connect_fail(self, client, userdata) -> None:
        ep = self.settings.mqtt
        log.warning("event=connect_failed broker=%s:%s action=retry max_backoff_s=5",
                    ep.host, ep.port)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        bad = [rc for rc in reason_codes if rc.is_failure]
        if bad:
            log.warning("event=subscribe_refused reasons=%s", bad)
        else:
            self.metrics.connected.set(1)  # ready: connected and subscribed

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._gen_lock:  # acks of this connection's messages must not reach the next
            self._gen += 1
        self.metrics.connected.set(0)
        log.warning("event=disconnected reason=%r", reason_code)

    def _on_message(self, client, userdata, msg) -> None:
        try:
            if not self.accepting.is_set():
                return  # not acked: the broker redelivers it to this session later
            props = msg.properties
            ctype = getattr(props, "ContentType", None) if props is not None else None
            topic = msg.topic  # paho decodes it on every access
            with self._pending_lock:
                self.pending += 1
                over = self.pending > self.max_pending
            if over:
                self._overrun()
            self.inbox.put(Message(self._gen, msg.mid, msg.qos, topic, msg.payload,
                                   int(time.time() * 1000), ctype,
                                   "/status/" not in topic and self._one_device(topic)
                                   and self._rate_limited(topic)))
        except Exception:
            log.exception("event=internal_error where=on_message")
            self.metrics.internal.inc()

    def _overrun(self) -> None:
        """A message past the Receive Maximum: counted, and logged once per session.

        The broker broke MQTT 5's flow control (mosquitto before 2.0.13 sends another Receive
        Maximum of queued messages on every ack); :meth:`_hold` then stops reading the
        socket, so the backlog waits at the broker, held back by TCP.
        """
        self.metrics.receive_max_exceeded.inc()
        if not self._overrun_logged:
            self._overrun_logged = True
            log.warning("event=receive_maximum_exceeded receive_maximum=%d pending=%d hint=%r",
                        self.max_pending, self.pending, "the broker ignores the Receive Maximum "
                        "(mosquitto < 2.0.13 does): the collector stops reading past it, so "
                        "an overload waits in the broker's memory; upgrade the broker")

    def _one_device(self, topic: str) -> bool:
        """Whether ``topic`` is one device's (not a source topic all its gateways share)."""
        if self.sources is None or not self.sources.active:
            return True
        src = self.sources.claim(topic)
        return src is None or src.trust != PAYLOAD

    def _rate_limited(self, topic: str) -> bool:
        """Token bucket per device (sensor or gateway) at settings.device_rate_limit msg/s."""
        rate = self.settings.device_rate_limit
        now = time.monotonic()
        b = self._buckets.get(topic)
        cap = max(2.0 * rate, 5.0)
        if b is None:
            if len(self._buckets) > 1_000_000:  # bounded: forget idle devices
                self._buckets.clear()
            self._buckets[topic] = [cap - 1.0, now]
            return False
        tokens = min(cap, b[0] + (now - b[1]) * rate)
        b[1] = now
        if tokens < 1.0:
            b[0] = tokens
            return True
        b[0] = tokens - 1.0
        return False
