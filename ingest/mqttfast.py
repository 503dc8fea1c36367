"""paho's MQTT client with cheaper receiving, for the collector's session.

In/out: exactly :class:`paho.mqtt.client.Client` (paho-mqtt 2.2, pinned), with two
per-message costs removed that the profile of ``citypulse bench ingest`` showed at one
reading per message (see docs/benchmarks.md):

- paho reads each packet with 3-4 ``recv`` calls (command byte, length bytes, body) and,
  with manual acks, one packet per wake-up of its loop.  Here the socket is read in 64 KB
  chunks and every complete packet in the chunk is handled before the loop sleeps again.
- paho matches every message's topic against ``message_callback_add`` filters; the
  collector registers none, so ``on_message`` is called straight away.

And one guard paho lacks: ``read_gate(timeout)``, when set, is asked before each read of
the socket; while it answers False (after waiting up to ``timeout``) the read reports no
data, paho's loop turns on (acks and pings go out) and TCP holds the broker back.  It keeps
a broker that sends past the client's Receive Maximum (mosquitto before 2.0.13 does, once
messages queue for the client) from filling the collector: what the collector holds passes
its bound by one read (64 KB) at most.  A read awaited by a ping is never held, so a long
hold cannot time the connection out.

Everything else (acks, reconnects, keepalive, TLS) is paho's own code.
"""

from __future__ import annotations

from collections.abc import Callable

import paho.mqtt.client as mqtt

_CHUNK = 65536
_HOLD_S = 0.1  # the longest a paused loop turn waits for room before keepalive work


class BufferedClient(mqtt.Client):
    """A paho client reading its socket in chunks (see module docstring)."""

    _rbuf: bytes = b""
    _rpos: int = 0
    read_gate: Callable[[float], bool] | None = None  # see the module docstring

    def _sock_recv(self, bufsize: int) -> bytes:
        buf, pos = self._rbuf, self._rpos
        if pos >= len(buf):
            gate = self.read_gate
            if gate is not None and not self._ping_t and not gate(_HOLD_S):
                raise BlockingIOError  # held: paho keeps a partial packet for the next turn
            buf = super()._sock_recv(_CHUNK)  # BlockingIOError when nothing is there
            if not buf:
                return b""  # connection closed
            self._rbuf, pos = buf, 0
        end = min(pos + bufsize, len(buf))
        self._rpos = end
        return buf[pos:end]

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        """Paho's loop_read, repeated while whole packets wait in the read buffer."""
        rc = super().loop_read(max_packets)
        while (rc == mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS and self._sock is not None
               and self._rpos < len(self._rbuf)):
            rc = super().loop_read(1)
        return rc

    def _sock_close(self) -> None:
        self._rbuf, self._rpos = b"", 0  # nothing of a closed connection reaches the next
        super()._sock_close()

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
