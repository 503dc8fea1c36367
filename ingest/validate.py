"""Validation of decoded readings against the registry and the catalogue (pure, no I/O).

In: a :class:`~citypulse.wire.payload.Decoded` message, its topic, raw payload and receive
time, a registry snapshot (``sensor_id -> Registered``) and a :class:`Window` of
acceptable timestamps.  Out: a frozen :class:`Validated` with rows ready for
``Store.write_rows`` (``(time, sensor, seq, v0..v7)``, unique by (sensor, time)) and
:class:`DeadLetter` s.  Never raises; every reading ends up a row, part of a row, or a dead
letter.  Reasons: unknown_sensor, wrong_gateway, unknown_metric, out_of_range,
bad_timestamp, and for a device clock ahead of the arrival by more than the window's
``ahead_ms``: restamped (the row stored at arrival time, the original kept as this dead
letter) or clock_ahead (rejected), by the ``clock_ahead_policy`` setting (plus the
decoder's malformed/too_large)::

    v = validate(decoded, topic, "city/v1/telemetry/s1", payload, now_ms, registry, window)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from citypulse.catalogue import DEVICE_KINDS as KINDS
from citypulse.catalogue import MAX_SLOTS
from citypulse.schema import merge_rows
from citypulse.wire import payload as wp
from citypulse.wire.topics import GATEWAY, Topic

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Window:
    """Acceptable reading times, epoch ms (inclusive): not older than retention, not too far ahead."""

    oldest_ms: int
    newest_ms: int
    ahead_ms: int | None = None  # a reading stamped further ahead of its arrival: clock policy
    restamp: bool = True         # ... stored at its arrival time (original kept) or rejected

    @classmethod
    def around(cls, now_ms: int, retention_days: float, max_future_s: float,
               clock_ahead_s: float | None = None, policy: str = "restamp") -> Window:
        """The window for readings received at ``now_ms`` (with the clock-ahead policy)."""
        return cls(now_ms - int(retention_days * 86_400_000), now_ms + int(max_future_s * 1000),
                   None if clock_ahead_s is None else int(clock_ahead_s * 1000),
                   policy == "restamp")

    @classmethod
    def of(cls, now_ms: int, settings) -> Window:
        """The window of ``settings`` (retention, max_future_s, the clock-ahead policy)."""
        return cls.around(now_ms, settings.raw_retention_days, settings.max_future_s,
                          settings.clock_ahead_s, settings.clock_ahead_policy)


def clock_check(ts_ms: int, received_ms: int, window: Window) -> tuple[int | None, str | None,
                                                                       str]:
    """The clock-ahead policy for one reading.

    Returns (time to store or None, dead-letter reason or None, detail).  A reading not
    ahead of its arrival beyond ``window.ahead_ms`` keeps its time.
    """
    ahead = ts_ms - received_ms
    if window.ahead_ms is None or ahead <= window.ahead_ms:
        return ts_ms, None, ""
    if window.restamp:
        return received_ms, wp.RESTAMPED, (f"device clock ahead by {ahead / 1000:.1f} s: "
                                           f"stored at arrival time {received_ms}, ts {ts_ms}")
    return None, wp.CLOCK_AHEAD, f"device clock ahead by {ahead / 1000:.1f} s: not stored"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A row of ``citypulse.dead_letters``."""

    received_at: datetime
    topic: str
    reason: str
    payload: bytes
    detail: str
    sensor_id: str | None

    def as_row(self) -> tuple:
        """The tuple in the table's column order."""
        return (self.received_at, self.topic, self.reason, self.payload, self.detail,
                self.sensor_id)


@dataclass(frozen=True, slots=True)
class Validated:
    """What one message contributes: rows (time, sensor, seq, v0..v7), dead letters, seq marks."""

    rows: tuple[tuple, ...]
    dead: tuple[DeadLetter, ...]
    duplicates: int = 0
    unknown_sensors: int = 0


def to_time(ms: int) -> datetime:
    """Epoch milliseconds as an aware UTC datetime (exact for milliseconds)."""
    return datetime.fromtimestamp(ms / 1000, UTC)


# kind -> metric name -> (slot, min, max): one dict lookup per value on the hot path
LIMITS = {k.name: {m.name: (i, m.min, m.max) for i, m in enumerate(k.metrics)}
           for k in KINDS.values()}


def dead_letter(received_ms: int, topic: str, reason: str, data: bytes, detail: str,
                sensor_id: str | None = None) -> DeadLetter:
    """Build one dead letter (text fields made storable: PostgreSQL text holds no NUL)."""
    if sensor_id is not None and "\x00" in sensor_id:
        sensor_id = sensor_id.replace("\x00", "\\x00")
    return DeadLetter(to_time(received_ms), topic.replace("\x00", "\\x00"), reason, data,
                      detail[:1000].replace("\x00", "\\x00"), sensor_id)


def _frag(sensor_id: str, ts: int, seq: int | None, values: Iterable[tuple[str, float]]) -> bytes:
    return orjson.dumps({"sensor_id": sensor_id, **wp.reading_obj(ts, dict(values), seq)})


def validate(decoded: wp.Decoded, topic: Topic, topic_str: str, payload: bytes,
             received_ms: int, registry: Mapping, window: Window) -> Validated:
    """Split a decoded message into rows and dead letters (see module docstring)."""
    dead = [dead_letter(received_ms, topic_str, r.reason, r.fragment, r.detail, r.sensor_id)
            for r in decoded.rejected]
    rows: list[tuple] = []
    times: dict[int, datetime] = {}
    unknown = 0
    gateway = topic.ident if topic.kind == GATEWAY else None
    for rd in decoded.readings:
        reg = registry.get(rd.sensor_id)
        if reg is None:
            unknown += 1
            dead.append(dead_letter(received_ms, topic_str, wp.UNKNOWN_SENSOR,
                                    _frag(rd.sensor_id, rd.ts_ms, rd.seq, rd.values),
                                    f"sensor {rd.sensor_id!r} is not registered", rd.sensor_id))
            continue
        if gateway is not None and reg.gateway_id != gateway:
            dead.append(dead_letter(
                received_ms, topic_str, wp.WRONG_GATEWAY,
                _frag(rd.sensor_id, rd.ts_ms, rd.seq, rd.values),
                f"sensor {rd.sensor_id!r} is behind gateway {reg.gateway_id!r}, "
                f"not {topic.ident!r}", rd.sensor_id))
            continue
        if not window.oldest_ms <= rd.ts_ms <= window.newest_ms:
            when = ("older than retention" if rd.ts_ms < window.oldest_ms else
                    f"too far in the future (ahead by {(rd.ts_ms - received_ms) / 1000:.1f} s)")
            dead.append(dead_letter(received_ms, topic_str, wp.BAD_TIMESTAMP,
                                    _frag(rd.sensor_id, rd.ts_ms, rd.seq, rd.values),
                                    f"ts {rd.ts_ms} is {when}", rd.sensor_id))
            continue
        ts_ms = rd.ts_ms
        if window.ahead_ms is not None and ts_ms - received_ms > window.ahead_ms:
            ts_ms, why, detail = clock_check(ts_ms, received_ms, window)
            dead.append(dead_letter(received_ms, topic_str, why,
                                    _frag(rd.sensor_id, rd.ts_ms, rd.seq, rd.values),
                                    detail, rd.sensor_id))
            if ts_ms is None:
                continue
        limits = LIMITS.get(reg.kind, {})
        slots: list = [None] * MAX_SLOTS
        any_good = False
        for name, value in rd.values:
            lim = limits.get(name)
            if lim is None:
                dead.append(dead_letter(received_ms, topic_str, wp.UNKNOWN_METRIC,
                                        _frag(rd.sensor_id, rd.ts_ms, rd.seq, [(name, value)]),
                                        f"{name!r} is not a metric of kind {reg.kind!r}",
                                        rd.sensor_id))
                continue
            i, lo, hi = lim
            if not lo <= value <= hi:
                m = KINDS[reg.kind].metrics[i]
                dead.append(dead_letter(received_ms, topic_str, wp.OUT_OF_RANGE,
                                        _frag(rd.sensor_id, rd.ts_ms, rd.seq, [(name, value)]),
                                        f"{name}={value!r} outside [{lo:g}, {hi:g}] {m.unit}",
                                        rd.sensor_id))
                continue
            if slots[i] is None:
                slots[i] = value
            any_good = True
        if any_good:
            t = times.get(ts_ms)
            if t is None:
                t = times[ts_ms] = to_time(ts_ms)
            rows.append((t, reg.id, rd.seq, *slots))
    if len(rows) > 1:
        rows, dups = merge_rows(rows)
    else:
        dups = 0
    return Validated(tuple(rows), tuple(dead), dups, unknown)
