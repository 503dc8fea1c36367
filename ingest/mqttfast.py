"""paho's MQTT client with cheaper receiving, for the collector's session.

In/out: exactly :class:`paho.mqtt.client.Client` (paho-mqtt 2.2, pinned), with two
per-message costs removed that the profile of ``citypulse bench ingest`` showed at one
reading per message (see docs/benchmarks.md):

- paho reads each packet with 3-4 ``recv`` calls (command byte, length bytes, body) and,
  with manual acks, one packet per wake-up of its loop.  Here the socket is read in 64 KB
  chunks and every complete packet in the chunk is handled before the loop sleeps again.
- paho matches every message's topic against ``message_callback_add`` filters; the
  collector registers none, so ``on_message`` is called straight away.
- ``hold``: while the receiver holds more than it asked the broker for (a broker ignoring
  the Receive Maximum), the socket is not read between packets: TCP's flow control then
  keeps the backlog at the broker instead of in this process.  At most one packet more is
  taken in, and a held connection still reads one chunk every third of the keepalive, so
  paho's keepalive sees it alive.
- paho decodes an MQTT 5 PUBLISH with three ``struct.unpack`` calls on format strings built
  per packet, each copying the rest of the packet, builds a ``Properties`` object even when
  the packet has none, and decodes the topic for a debug line nobody logs.  Here a QoS 0/1
  PUBLISH is parsed by offsets (one copy of the payload; a lone content type read directly,
  other properties parsed by paho) into a :class:`Publish` with the attributes of paho's
  ``MQTTMessage`` the collector reads.  QoS 2, MQTT 3, a topic that is not UTF-8 or a
  client logging packets take paho's own path.

Everything else (acks, reconnects, keepalive, TLS) is paho's own code.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

_CHUNK = 65536


_CONTENT_TYPE = 0x03  # the MQTT 5 property identifier


class ContentTypeOnly:
    """The properties of a PUBLISH whose only property is its content type."""

    __slots__ = ("ContentType",)

    def __init__(self, content_type: str) -> None:
        self.ContentType = content_type


class Publish:
    """A received PUBLISH: what the collector's ``on_message`` reads of paho's ``MQTTMessage``."""

    __slots__ = ("mid", "payload", "properties", "qos", "topic")

    def __init__(self, topic: str, payload: bytes, mid: int, qos: int,
                 properties: Properties | ContentTypeOnly | None) -> None:
        self.topic, self.payload, self.mid, self.qos = topic, payload, mid, qos
        self.properties = properties


class BufferedClient(mqtt.Client):
    """A paho client reading its socket in chunks (see module docstring)."""

    _rbuf: bytes = b""
    _rpos: int = 0
    # the receiver's gate: hold(timeout) waits up to timeout while it holds too much, and
    # says whether it still does (set by the collector's session)
    hold: Callable[[float], bool] | None = None
    _held_since = 0.0

    def _holding(self, wait: float) -> bool:
        """Whether to leave the socket unread now (see the module docstring)."""
        hold = self.hold
        if hold is None or not hold(wait):
            self._held_since = 0.0
            return False
        now = time.monotonic()
        if not self._held_since:
            self._held_since = now
        elif now - self._held_since >= max(1.0, self._keepalive / 3):
            self._held_since = now  # one chunk in: bytes received keep the connection alive
            return False
        return True

    def _sock_recv(self, bufsize: int) -> bytes:
        buf, pos = self._rbuf, self._rpos
        if pos >= len(buf):
            buf = super()._sock_recv(_CHUNK)  # BlockingIOError when nothing is there
            if not buf:
                return b""  # connection closed
            self._rbuf, pos = buf, 0
        end = min(pos + bufsize, len(buf))
        self._rpos = end
        return buf[pos:end]

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        """Paho's loop_read, repeated while whole packets wait in the read buffer.

        Held (see :attr:`hold`): waits up to 50 ms for the receiver, then leaves the socket
        for the next turn of the loop, which flushes the acks that free the receiver.
        """
        if self._holding(0.05):
            return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
        rc = super().loop_read(max_packets)
        while (rc == mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS and self._sock is not None
               and self._rpos < len(self._rbuf) and not self._holding(0)):
            rc = super().loop_read(1)
        return rc

    def loop_misc(self) -> mqtt.MQTTErrorCode:
        """Paho's loop_misc; first, packets left in the read buffer by a hold, once released.

        The socket may have nothing new to wake the loop's select for them.
        """
        if self._sock is not None and self._rpos < len(self._rbuf) and not self._holding(0):
            rc = self.loop_read()
            if rc != mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS:
                return rc
        return super().loop_misc()

    def _sock_close(self) -> None:
        self._rbuf, self._rpos = b"", 0  # nothing of a closed connection reaches the next
        super()._sock_close()

    def _handle_publish(self) -> mqtt.MQTTErrorCode:
        """A QoS 0/1 MQTT 5 PUBLISH by offsets (see the module docstring), else paho's."""
        header = self._in_packet["command"]
        qos = (header & 0x06) >> 1
        if (qos == 2 or self._protocol != mqtt.MQTTv5 or self._logger is not None
                or self.on_log is not None):
            return super()._handle_publish()
        packet = self._in_packet["packet"]
        try:
            pos = 2 + ((packet[0] << 8) | packet[1])
            topic = packet[2:pos].decode()
            mid = 0
            if qos:
                mid = (packet[pos] << 8) | packet[pos + 1]
                pos += 2
            props = None
            plen = packet[pos]
            if plen == 0:
                pos += 1
            elif (plen < 0x80 and packet[pos + 1] == _CONTENT_TYPE
                  and plen == 3 + ((packet[pos + 2] << 8) | packet[pos + 3])):
                props = ContentTypeOnly(packet[pos + 4:pos + 1 + plen].decode())
                pos += 1 + plen
            else:  # other properties: paho parses them
                props = Properties(PacketTypes.PUBLISH)
                pos += props.unpack(packet[pos:])[1]
        except (IndexError, UnicodeDecodeError):
            return super()._handle_publish()  # paho reports it its own way
        payload = bytes(memoryview(packet)[pos:])  # paho's packet buffer is a bytearray
        self._handle_on_message(Publish(topic, payload, mid, qos, props))
        if qos == 1 and not self._manual_ack:
            return self._send_puback(mid)
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def _handle_on_message(self, message: mqtt.MQTTMessage) -> None:
        on_message = self.on_message
        if on_message is None:
            return
        with self._in_callback_mutex:
            try:
                on_message(self, self._userdata, message)
            except Exception as err:
                self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                if not self.suppress_exceptions:
                    raise
