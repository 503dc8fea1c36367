"""Payload encodings the simulator can send: JSON (the default) or MessagePack.

In: a payload as encoded by :mod:`device_sim.run` (JSON bytes) and an encoding name.  Out:
the bytes to send and the MQTT 5 content type announcing them (None for JSON, the wire
contract's default).  MessagePack carries the same document (``citypulse.wire.payload``
decodes both); a payload that is not JSON (a simulated garbled message, a status word) is
sent unchanged, so a fault stays a fault::

    data, ctype = encode.payload(b'{"ts": 1, "values": {"speed_kmh": 3}}', "msgpack")
"""

from __future__ import annotations

import msgspec
import orjson

from citypulse.wire import payload as wp

ENCODINGS = ("json", "msgpack")


def payload(data: bytes, encoding: str) -> tuple[bytes, str | None]:
    """``data`` (JSON) in ``encoding``, with its content type (see module docstring)."""
    if encoding != "msgpack" or data[:1] not in (b"{", b"["):
        return data, None
    try:
        return msgspec.msgpack.encode(orjson.loads(data)), wp.CONTENT_MSGPACK
    except orjson.JSONDecodeError:
        return data, wp.CONTENT_MSGPACK  # garbled on purpose: announced, and still garbled
