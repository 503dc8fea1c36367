"""A typed fast path for decoding well-formed payloads (msgspec), falling back to the wire decoder.

:func:`rows` is the collector's hot path: one typed pass from payload bytes straight to store
rows, validated against the registry snapshot and the catalogue on the way; it gives up
(None) at the first thing that is not a storable reading, and the message then takes the
full path (:func:`decode`, then :func:`ingest.validate.validate`), which says exactly what
is wrong and dead-letters it.  So the fast path never decides a dead letter.  Plain JSON
payloads first go through the same pass in C (``ingest/_fastrows.c``, built on install);
whatever it does not take, and MessagePack, go through msgspec here.

:func:`decode`: in, the same arguments as :func:`citypulse.wire.payload.decode`.  Out: the
same :class:`~citypulse.wire.payload.Decoded` it would return.  Well-formed messages (``ts`` an
integer or absent, ``seq`` a non-negative integer or absent, ``values`` a non-empty object of
finite numbers) are decoded by msgspec straight into typed structs, several times faster
than walking generic JSON; anything else is handed to the wire decoder, which says exactly
what is wrong.  Never raises.
"""

from __future__ import annotations

import math

import msgspec

from citypulse.catalogue import MAX_SLOTS
from citypulse.schema.store import RAW_TYPES
from citypulse.wire import payload as wp
from citypulse.wire.topics import GATEWAY, TELEMETRY, Topic
from ingest.validate import LIMITS, Window, to_time

try:
    from ingest import _fastrows as native
except ImportError:  # not compiled (a checkout used without `make deps`): the msgspec path
    native = None

_TS_LIMIT = 2**62
_SEQ_LIMIT = 2**63


class _Item(msgspec.Struct, gc=False):
    values: dict[str, float]
    ts: int | None = None
    seq: int | None = None


_Tele = _Item | list[_Item]
_Gw = dict[str, list[_Item]]
_DECODERS = {
    (TELEMETRY, False): msgspec.json.Decoder(_Tele),
    (GATEWAY, False): msgspec.json.Decoder(_Gw),
    (TELEMETRY, True): msgspec.msgpack.Decoder(_Tele),
    (GATEWAY, True): msgspec.msgpack.Decoder(_Gw),
}


def _convert(sid: str, it: _Item, received_ms: int, out: list[wp.Reading]) -> bool:
    ts = received_ms if it.ts is None else it.ts
    seq = it.seq
    values = it.values
    if not values or not -_TS_LIMIT < ts < _TS_LIMIT:
        return False
    if seq is not None and not 0 <= seq < _SEQ_LIMIT:
        return False
    for v in values.values():
        if not math.isfinite(v):
            return False
    out.append(wp.Reading(sid, ts, seq, tuple(values.items())))
    return True


def decode(payload: bytes, topic: Topic, received_ms: int, *, max_bytes: int = 1_048_576,
           content_type: str | None = None) -> wp.Decoded:
    """Decode like :func:`citypulse.wire.payload.decode`, faster for well-formed messages."""
    dec = _DECODERS.get((topic.kind, content_type == wp.CONTENT_MSGPACK))
    if dec is None or len(payload) > max_bytes:
        return wp.decode(payload, topic, received_ms, max_bytes=max_bytes,
                         content_type=content_type)
    try:
        doc = dec.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError, RecursionError):
        doc = None
    out: list[wp.Reading] = []
    ok = doc is not None
    if ok and topic.kind == TELEMETRY:
        for it in doc if isinstance(doc, list) else (doc,):
            if not _convert(topic.ident, it, received_ms, out):
                ok = False
                break
    elif ok:
        for sid, items in doc.items():
            if not sid or not ok:
                ok = False
                break
            for it in items:
                if not _convert(sid, it, received_ms, out):
                    ok = False
                    break
    if not ok:
        return wp.decode(payload, topic, received_ms, max_bytes=max_bytes,
                         content_type=content_type)
    return wp.Decoded(tuple(out), ())


_EMPTY: dict = {}
# name -> (row index, min, max) per kind: the row is (time, sensor, seq, v0..v7)
_ROW_LIMITS = {k: {n: (i + 3, lo, hi) for n, (i, lo, hi) in m.items()} for k, m in LIMITS.items()}
if MAX_SLOTS != 8:  # rows() spells the row out: time, sensor, seq and 8 value slots
    raise ImportError(f"ingest.fastdecode.rows builds 8 value slots, the catalogue has {MAX_SLOTS}")
# finite bounds reject NaN and infinities by the range check alone
_FINITE = all(math.isfinite(b) for m in LIMITS.values() for _, lo, hi in m.values()
              for b in (lo, hi))
# the layout the C pass writes COPY rows in (checked, so a schema change cannot go unnoticed)
_COPY_LAYOUT = RAW_TYPES == ("timestamptz", "int4", "int8") + ("float8",) * MAX_SLOTS
# the same, as the C pass reads it: kind -> ((metric name as bytes, row index, min, max), ...)
_NATIVE_LIMITS = {k: tuple((n.encode(), i, float(lo), float(hi)) for n, (i, lo, hi) in m.items())
                  for k, m in _ROW_LIMITS.items()}


def rows(payload: bytes, topic: Topic, received_ms: int, content_type: str | None,
         registry, window: Window, times: dict[int, object],
         copy: bytearray | None = None) -> list[tuple] | None:
    """Store rows ``(time, sensor, seq, v0..v7)`` of a message whose every reading is storable.

    None when anything is not (malformed, unknown or misplaced sensor, unknown metric, value
    out of range or not finite, time outside ``window`` or ahead of arrival beyond its clock
    policy): the caller then takes the full
    path.  ``times`` caches epoch ms -> datetime across a batch.  Never raises.

    ``copy``: when the C pass takes the message, it also appends the rows to ``copy`` in
    PostgreSQL's binary COPY row format (:data:`citypulse.schema.RAW_TYPES`), which the store
    then sends as they are; the msgspec path leaves ``copy`` as it was (the caller tells by
    its length).
    """
    msgpack = content_type == wp.CONTENT_MSGPACK
    dec = _DECODERS.get((topic.kind, msgpack))
    if dec is None:
        return None
    oldest, newest = window.oldest_ms, window.newest_ms
    if window.ahead_ms is not None:  # a clock ahead of its arrival: the full path's policy
        newest = min(newest, received_ms + window.ahead_ms)
    if native is not None and not msgpack:
        gw = topic.kind == GATEWAY
        try:
            out = native.rows(payload, topic.ident if gw else None, None if gw else topic.ident,
                              received_ms, registry, _NATIVE_LIMITS, oldest, newest, times,
                              to_time, MAX_SLOTS, copy if _COPY_LAYOUT else None)
        except Exception:  # noqa: BLE001 - never raises: the msgspec path decides
            out = None
        if out is not None:
            return out
    return _typed(payload, topic, received_ms, dec, registry, oldest, newest, times)


def _typed(payload: bytes, topic: Topic, received_ms: int, dec, registry, oldest: int,
           newest: int, times: dict[int, object]) -> list[tuple] | None:
    """:func:`rows` through msgspec (MessagePack, or JSON the C pass left to it)."""
    try:
        doc = dec.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError, RecursionError):
        return None
    if topic.kind == TELEMETRY:
        groups = ((topic.ident, doc if isinstance(doc, list) else (doc,)),)
        gateway = None
    else:
        groups = doc.items()
        gateway = topic.ident
    out: list[tuple] = []
    append = out.append
    for sid, items in groups:
        reg = registry.get(sid)
        if reg is None or (gateway is not None and reg.gateway_id != gateway):
            return None
        limits = _ROW_LIMITS.get(reg.kind, _EMPTY)
        rid = reg.id
        for it in items:
            ts = it.ts
            if ts is None:
                ts = received_ms
            seq = it.seq
            values = it.values
            if not (oldest <= ts <= newest and values) or (
                    seq is not None and not 0 <= seq < _SEQ_LIMIT):
                return None
            t = times.get(ts)
            if t is None:
                t = times[ts] = to_time(ts)
            row = [t, rid, seq, None, None, None, None, None, None, None, None]
            for name, v in values.items():
                lim = limits.get(name)
                if lim is None:
                    return None
                i, lo, hi = lim
                if not lo <= v <= hi or not (_FINITE or math.isfinite(v)):
                    return None
                row[i] = v
            append(tuple(row))
    return out
