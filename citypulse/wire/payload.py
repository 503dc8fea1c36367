"""Payload encoding and decoding for wire contract v1 (JSON, or MessagePack of the same shape).

In (decode): the payload bytes, the parsed :class:`~citypulse.wire.topics.Topic`, the
receive time and an optional MQTT 5 content type.  Out: a frozen :class:`Decoded` holding
:class:`Reading` records and :class:`Rejected` fragments, each with a dead-letter reason.
``decode`` never raises: whatever the bytes, every part of the message ends up either as a
reading or as a rejection.  Validation against the registry and catalogue (sensor known,
metric of its kind, value in range, time window) is the collector's job, not this module's.

Shapes (ThingsBoard-compatible)::

    telemetry:  {"ts": 1764000000123, "seq": 42, "values": {"speed_kmh": 38.5}}
                [{"ts": ..., "values": {...}}, ...]
                {"speed_kmh": 38.5}                 (no ts: stamped on receipt)
    gateway:    {"<sensor_id>": [{"ts": ..., "seq": ..., "values": {...}}, ...], ...}

``ts`` is epoch milliseconds, or an ISO-8601 string with a zone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import msgspec
import orjson

from citypulse.wire.topics import GATEWAY, TELEMETRY, Topic

CONTENT_JSON = "application/json"
CONTENT_MSGPACK = "application/msgpack"

# Dead-letter reason codes (the store's dead_letters.reason); the collector adds the
# registry- and catalogue-based ones.
MALFORMED = "malformed"
TOO_LARGE = "too_large"
UNKNOWN_SENSOR = "unknown_sensor"
WRONG_GATEWAY = "wrong_gateway"
UNKNOWN_METRIC = "unknown_metric"
OUT_OF_RANGE = "out_of_range"
BAD_TIMESTAMP = "bad_timestamp"
RATE_LIMITED = "rate_limited"
# a device clock ahead of its readings' arrival (settings clock_ahead_s, clock_ahead_policy):
# RESTAMPED keeps the original of a reading stored at its arrival time, CLOCK_AHEAD rejects it
RESTAMPED = "restamped"
CLOCK_AHEAD = "clock_ahead"
REASONS = (
    MALFORMED, TOO_LARGE, UNKNOWN_SENSOR, WRONG_GATEWAY, UNKNOWN_METRIC, OUT_OF_RANGE,
    BAD_TIMESTAMP, RATE_LIMITED, RESTAMPED, CLOCK_AHEAD,
)

_MAX_DEPTH_HINT = 64
_msgpack_decoder = msgspec.msgpack.Decoder()


@dataclass(frozen=True, slots=True)
class Reading:
    """One reading of one sensor: time (epoch ms), optional seq, metric -> value pairs."""

    sensor_id: str
    ts_ms: int
    seq: int | None
    values: tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class Rejected:
    """A part of a message that cannot be stored as data, and why."""

    reason: str
    detail: str
    fragment: bytes  # the offending part (the whole payload for message-level reasons)
    sensor_id: str | None = None


@dataclass(frozen=True, slots=True)
class Decoded:
    """What one message carried: readings and rejected fragments."""

    readings: tuple[Reading, ...]
    rejected: tuple[Rejected, ...]


def _fragment(obj: object) -> bytes:
    try:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return repr(obj).encode("utf-8", "replace")[:4096]


def parse_ts(ts: object, received_ms: int) -> int | None:
    """Epoch milliseconds from a ``ts`` field; None when it is not a valid timestamp."""
    if ts is None:
        return received_ms
    if isinstance(ts, bool):
        return None
    if isinstance(ts, int):
        return ts if -(2**62) < ts < 2**62 else None
    if isinstance(ts, float):
        return int(ts) if math.isfinite(ts) and abs(ts) < 2**62 else None
    if isinstance(ts, str):
        try:
            dt = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        except ValueError:
            return None
        if dt.tzinfo is None:
            return None
        return int(dt.timestamp() * 1000)
    return None


def _number(v: object) -> float | None:
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, int | float):
        f = float(v)
        return f if math.isfinite(f) else None
    return None


def _reading(sensor_id: str, obj: object, received_ms: int,
             out: list[Reading], rej: list[Rejected]) -> None:
    """Append the reading in ``obj`` (one reading object) to ``out`` or its faults to ``rej``."""
    if not isinstance(obj, dict):
        rej.append(Rejected(MALFORMED, "a reading must be a JSON object", _fragment(obj), sensor_id))
        return
    if "values" in obj:
        values = obj.get("values")
        if not isinstance(values, dict):
            rej.append(Rejected(MALFORMED, "'values' must be an object of metric: number",
                                _fragment(obj), sensor_id))
            return
        ts_raw = obj.get("ts")
        seq = obj.get("seq")
    else:  # bare {"metric": value} object, stamped on receipt
        values, ts_raw, seq = obj, None, None
    ts = parse_ts(ts_raw, received_ms)
    if ts is None:
        rej.append(Rejected(BAD_TIMESTAMP, f"unparseable ts {ts_raw!r:.80}", _fragment(obj), sensor_id))
        return
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int)
                            or not 0 <= seq < 2**63):
        rej.append(Rejected(MALFORMED, f"seq must be a non-negative integer, got {seq!r:.40}",
                            _fragment(obj), sensor_id))
        return
    good: list[tuple[str, float]] = []
    for name, v in values.items():
        f = _number(v)
        if f is None or not isinstance(name, str):
            rej.append(Rejected(MALFORMED, f"value of {name!r:.60} is not a finite number",
                                _fragment({"ts": ts, "seq": seq, "values": {str(name): v}}),
                                sensor_id))
        else:
            good.append((name, f))
    if good:
        out.append(Reading(sensor_id, ts, seq, tuple(good)))
    elif not values:
        rej.append(Rejected(MALFORMED, "reading has no values", _fragment(obj), sensor_id))


def _load(payload: bytes, content_type: str | None) -> tuple[object, str | None]:
    if content_type == CONTENT_MSGPACK:
        try:
            return _msgpack_decoder.decode(payload), None
        except (msgspec.DecodeError, ValueError, TypeError, RecursionError) as exc:
            return None, f"not MessagePack: {exc}"
    try:
        return orjson.loads(payload), None
    except (orjson.JSONDecodeError, RecursionError) as exc:
        return None, f"not JSON: {exc}"


def decode(payload: bytes, topic: Topic, received_ms: int, *, max_bytes: int = 1_048_576,
           content_type: str | None = None) -> Decoded:
    """Decode a telemetry or gateway message.  Never raises (see module docstring)."""
    if len(payload) > max_bytes:
        return Decoded((), (Rejected(TOO_LARGE, f"{len(payload)} bytes > {max_bytes}",
                                     payload, topic.ident or None),))
    doc, err = _load(payload, content_type)
    if err is not None:
        return Decoded((), (Rejected(MALFORMED, err[:300], payload, topic.ident or None),))
    out: list[Reading] = []
    rej: list[Rejected] = []
    try:
        if topic.kind == TELEMETRY:
            items = doc if isinstance(doc, list) else [doc]
            for item in items:
                _reading(topic.ident, item, received_ms, out, rej)
        elif topic.kind == GATEWAY:
            if not isinstance(doc, dict):
                rej.append(Rejected(MALFORMED, "gateway payload must be an object of "
                                    "sensor_id: [readings]", payload, None))
            else:
                for sid, items in doc.items():
                    if not isinstance(sid, str) or not sid:
                        rej.append(Rejected(MALFORMED, "bad sensor id key", _fragment(items)))
                        continue
                    for item in items if isinstance(items, list) else [items]:
                        _reading(sid, item, received_ms, out, rej)
        else:
            rej.append(Rejected(MALFORMED, f"not a telemetry topic ({topic.kind})", payload))
    except RecursionError:
        return Decoded((), (Rejected(MALFORMED, "nested too deeply", payload),))
    return Decoded(tuple(out), tuple(rej))


# --- encoding (what devices, gateways and the simulator send) ------------------------------

def reading_obj(ts_ms: int, values: dict[str, float], seq: int | None = None) -> dict:
    """The JSON object of one reading."""
    obj: dict = {"ts": ts_ms}
    if seq is not None:
        obj["seq"] = seq
    obj["values"] = values
    return obj


def encode(obj: object, content_type: str = CONTENT_JSON) -> bytes:
    """Encode a telemetry or gateway document as JSON (default) or MessagePack."""
    if content_type == CONTENT_MSGPACK:
        return msgspec.msgpack.encode(obj)
    return orjson.dumps(obj)
