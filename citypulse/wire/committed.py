"""The internal "committed batch" message: readings a collector has committed, one message a batch.

In: reading rows as the store writes them (``(time, sensor id, seq, v0 .. v7)``, see
:data:`citypulse.schema.store.RAW_COLUMNS`).  Out: one msgpack document, published QoS 1 on
:func:`citypulse.wire.topics.committed` by a collector after its commit when
``CITYPULSE_STA_MQTT`` is on; :func:`decode` turns it back into :class:`Reading` records
(the SensorThings MQTT relay, :mod:`standards.sta.mqtt`, reads them)::

    data = encode(rows)            # bytes, a few per reading
    for r in decode(data): ...     # Reading(time, sensor, values)

Format (version 1): ``[1, [[epoch microseconds, sensor id, v0, v1, ...], ...]]``, each row's
values up to its last non-null slot (``nil`` for an empty slot).  :func:`decode` raises
:class:`FormatError` (naming what is wrong) for anything else.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import msgspec

from citypulse.catalogue import MAX_SLOTS

VERSION = 1
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


class FormatError(ValueError):
    """A committed-batch message that is not version 1 of this format; the text says why."""


class Reading(NamedTuple):
    """One committed row: its time, the sensor's ``sensors.id`` and the slot values."""

    time: datetime
    sensor: int
    values: tuple[float | None, ...]


def encode(rows: Iterable[Sequence]) -> bytes:
    """Store rows ``(time, sensor, seq, v0 .. v7)`` -> one message (the seq is not carried)."""
    out = []
    for r in rows:
        vals = list(r[3:3 + MAX_SLOTS])
        while vals and vals[-1] is None:
            vals.pop()
        out.append([(r[0] - EPOCH) // _US, r[1], *vals])
    return _encoder.encode([VERSION, out])


def decode(data: bytes) -> list[Reading]:
    """One message -> its readings; raises :class:`FormatError` when it is not this format."""
    try:
        doc = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise FormatError(f"not msgpack: {exc}") from None
    if not (isinstance(doc, list) and len(doc) == 2 and doc[0] == VERSION
            and isinstance(doc[1], list)):
        raise FormatError(f"expected [{VERSION}, [rows]], got {str(doc)[:80]}")
    out = []
    for i, row in enumerate(doc[1]):
        if not (isinstance(row, list) and 2 <= len(row) <= 2 + MAX_SLOTS
                and all(type(x) is int for x in row[:2])
                and all(v is None or type(v) in (int, float) for v in row[2:])):
            raise FormatError(f"row {i}: expected [epoch us, sensor id, values...], "
                              f"got {str(row)[:80]}")
        try:
            t = EPOCH + row[0] * _US
        except OverflowError:
            raise FormatError(f"row {i}: time {row[0]} out of range") from None
        out.append(Reading(t, row[1], tuple(None if v is None else float(v) for v in row[2:])))
    return out
