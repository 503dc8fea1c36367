"""An MQTT 5 client with a persistent session, for both ends of the commands contract.

In: a broker URL, a client id, the topics to (re)subscribe on every connect, a message
callback.  Out: a started paho client (network thread running) whose session survives
disconnects and broker restarts (clean start off, session expiry), so QoS 1 messages sent
while it was away are delivered when it comes back.  A broker not reachable yet is retried
by paho's network thread (the first connection too) with capped backoff (0.2 s doubling to
:data:`MAX_BACKOFF_S`), each failed attempt logged::

    link = Session(url, "citypulse-commands", ["city/v1/commands/+/response"], on_message)
    link.wait_connected(10)
    link.client.publish(topic, payload, qos=1)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from citypulse.settings import MqttEndpoint

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600
MAX_BACKOFF_S = 5


class Session:
    """One MQTT 5 connection with a persistent session; see the module doc."""

    def __init__(self, url: str, client_id: str, subscriptions: list[str],
                 on_message: Callable[[str, bytes, object], None], *,
                 ca_file: Path | None = None, on_connect: Callable[[], None] | None = None,
                 connect: bool = True) -> None:
        self.endpoint = MqttEndpoint(url)
        self.subscriptions = list(subscriptions)
        self.connected = threading.Event()
        self._on_connect_cb = on_connect
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=mqtt.MQTTv5)
        if self.endpoint.username:
            c.username_pw_set(self.endpoint.username, self.endpoint.password)
        if self.endpoint.tls:
            c.tls_set(ca_certs=str(ca_file) if ca_file else None)
        c.max_queued_messages_set(100_000)
        c.max_inflight_messages_set(100)
        c.reconnect_delay_set(0.2, MAX_BACKOFF_S)
        c.on_connect = self._connected
        c.on_connect_fail = lambda *_a: log.warning(
            "mqtt: broker %s:%s not reachable; retrying (backoff up to %d s)",
            self.endpoint.host, self.endpoint.port, MAX_BACKOFF_S)
        c.on_disconnect = lambda *_a: self.connected.clear()
        c.on_subscribe = self._ready  # subscribed: nothing published from now on is missed
        c.on_message = lambda _c, _u, msg: self._deliver(on_message, msg)
        self.client = c
        if connect:
            self.start()

    def start(self) -> None:
        """Connect (asynchronously) and start the network thread."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        try:
            self.client.connect_async(self.endpoint.host, self.endpoint.port, keepalive=15,
                                      clean_start=False, properties=props)
        except (OSError, ValueError) as exc:
            log.error("mqtt: cannot reach %s: %s", self.endpoint, exc)
        self.client.loop_start()

    def _connected(self, client, _u, _flags, reason, _props=None) -> None:
        if reason.is_failure:
            log.error("mqtt: connection refused by %s: %s", self.endpoint, reason)
            return
        log.info("mqtt: connected to %s:%s", self.endpoint.host, self.endpoint.port)
        if self.subscriptions:
            client.subscribe([(t, mqtt.SubscribeOptions(qos=1)) for t in self.subscriptions])
        else:
            self._ready()

    def _ready(self, *_a: object) -> None:
        self.connected.set()
        if self._on_connect_cb:
            self._on_connect_cb()

    @staticmethod
    def _deliver(fn: Callable, msg: mqtt.MQTTMessage) -> None:
        try:  # nothing raises at a message boundary
            fn(msg.topic, msg.payload, getattr(msg, "properties", None))
        except Exception:
            log.exception("mqtt: handling a message on %s failed", msg.topic)

    def wait_connected(self, timeout: float = 10.0) -> bool:
        """Wait until connected and subscribed."""
        return self.connected.wait(timeout)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                response_topic: str | None = None, correlation: bytes | None = None) -> None:
        """Publish; with a response topic / correlation data as MQTT 5 properties."""
        props = None
        if response_topic or correlation:
            props = Properties(PacketTypes.PUBLISH)
            if response_topic:
                props.ResponseTopic = response_topic
            if correlation:
                props.CorrelationData = correlation
        self.client.publish(topic, payload, qos=qos, retain=retain, properties=props)

    def close(self, disconnect: bool = True) -> None:
        """Stop the network thread (and disconnect cleanly: the session stays on the broker)."""
        if disconnect:
            self.client.disconnect()
        self.client.loop_stop()
