"""paho's MQTT client with cheaper receiving, for the collector's session.

In/out: exactly :class:`paho.mqtt.client.Client` (paho-mqtt 2.2, pinned), with two
per-message costs removed that the profile of ``citypulse bench ingest`` showed at one
reading per message (see docs/benchmarks.md):

- paho reads each packet with 3-4 ``recv`` calls (command byte, length bytes, body) and,
  with manual acks, one packet per wake-up of its loop.  Here the socket is read in 64 KB
  chunks and every complete packet in the chunk is handled before the loop sleeps again.
- paho matches every message's topic against ``message_callback_add`` filters; the
  collector registers none, so ``on_message`` is called straight away.

Everything else (acks, reconnects, keepalive, TLS) is paho's own code.
"""

from __future__ import annotations

import paho.mqtt.client as mqtt

_CHUNK = 65536


class BufferedClient(mqtt.Client):
    """A paho client reading its socket in chunks (see module docstring)."""

    _rbuf: bytes = b""
    _rpos: int = 0

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
