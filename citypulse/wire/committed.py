"""The internal "committed batch" message: readings a collector has committed, one message a batch.

In: reading rows as the store writes them (``(time, sensor id, seq, v0 .. v7)``, see
:data:`citypulse.schema.store.RAW_COLUMNS`).  Out: one msgpack document, published QoS 1 on
:func:`citypulse.wire.topics.committed` by a collector after its commit when
``CITYPULSE_STA_MQTT`` is on; :func:`decode` turns it back into :class:`Reading` records
(the SensorThings MQTT relay, :mod:`standards.sta.mqtt`, reads them)::

    data = encode(rows)            # bytes, ~50 per reading
    for r in decode(data): ...     # Reading(time, sensor, values)

Format (version 1): ``[1, [[time, sensor id, seq, v0, v1, ...], ...]]``, each row as the
store wrote it (the time a msgpack timestamp, exact to the microsecond; ``nil`` for no seq
or an empty slot), so encoding a batch is one msgspec call and no Python work per row.
:func:`decode` raises :class:`FormatError` (naming what is wrong) for anything else.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import NamedTuple

import msgspec

from citypulse.catalogue import MAX_SLOTS

VERSION = 1
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


class FormatError(ValueError):
    """A committed-batch message that is not version 1 of this format; the text says why."""


class Reading(NamedTuple):
    """One committed row: its time, the sensor's ``sensors.id`` and the slot values."""

    time: datetime
    sensor: int
    values: tuple[float | None, ...]


def encode(rows: Sequence[Sequence]) -> bytes:
    """Store rows ``(time, sensor, seq, v0 .. v7)`` (times timezone-aware) -> one message."""
    return _encoder.encode([VERSION, rows])


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
        if not (isinstance(row, list) and 3 <= len(row) <= 3 + MAX_SLOTS
                and isinstance(row[0], datetime) and row[0].tzinfo is not None
                and type(row[1]) is int and (row[2] is None or type(row[2]) is int)
                and all(v is None or type(v) in (int, float) for v in row[3:])):
            raise FormatError(f"row {i}: expected [time, sensor id, seq, values...], "
                              f"got {str(row)[:80]}")
        out.append(Reading(row[0], row[1],
                           tuple(None if v is None else float(v) for v in row[3:])))
    return out
