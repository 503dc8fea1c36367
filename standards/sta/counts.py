"""``$count`` of one datastream's observations over a time window, from the rollups.

In: the datastream's sensor row and metric slot and a window ``[lo, hi)``.  Out: the number
of observations, equal to ``count(*)`` over ``raw`` but read from ``citypulse.rollup_1m``
(column ``c<slot>``: readings with that metric per minute) for every whole minute in the
window that is settled (not listed in ``citypulse.rollup_dirty``, i.e. rolled up after its
last write); the partial minutes at the edges and the dirty minutes are counted on ``raw``
with index range scans.  A day is then ~1,440 rollup rows instead of every reading.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from standards.sta.odata import Node

MINUTE = timedelta(minutes=1)
US = timedelta(microseconds=1)


def _floor(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


def _ceil(t: datetime) -> datetime:
    f = _floor(t)
    return f if f == t else f + MINUTE


def conjuncts(n: Node | None) -> list[Node]:
    """The top-level ``and`` terms of a filter."""
    if n is None:
        return []
    if n.op == "and":
        return conjuncts(n.args[0]) + conjuncts(n.args[1])
    return [n]


def time_window(filt: Node | None, pinned: int | None = None
                ) -> tuple[datetime, datetime] | None:
    """``[lo, hi)`` when ``filt`` is only ``phenomenonTime`` bounds (both given).

    Datetime literals only; the ``Datastream/@iot.id eq N`` conjunct that pins the
    datastream may be there too.  None otherwise (the count then runs on ``raw``).
    """
    lo = hi = None
    for c in conjuncts(filt):
        if c.op not in ("ge", "gt", "lt", "le", "eq"):
            return None
        a, b = c.args
        if a.op == "prop" and a.value and a.value[0] == "Datastream" and c.op == "eq" \
                and pinned is not None:
            continue
        if not (a.op == "prop" and a.value == ("phenomenonTime",) and b.op == "lit"
                and b.kind == "datetime"):
            return None
        t = b.value if b.value.tzinfo else b.value.replace(tzinfo=UTC)
        if c.op in ("ge", "gt"):
            t = t + US if c.op == "gt" else t
            lo = t if lo is None else max(lo, t)
        elif c.op in ("lt", "le"):
            t = t + US if c.op == "le" else t
            hi = t if hi is None else min(hi, t)
        else:
            return None
    if lo is None or hi is None:
        return None
    return lo, max(lo, hi)


def observations(reader, sensor: int, slot: int, lo: datetime, hi: datetime) -> int:
    """Observations of datastream ``sensor * 8 + slot`` with ``lo <= time < hi``."""
    v, c = f"v{slot}", f"c{slot}"
    a, b = _ceil(lo), _floor(hi)
    if a >= b:
        return reader.q(f"""SELECT count(*) AS n FROM citypulse.raw WHERE sensor = %s
            AND time >= %s AND time < %s AND {v} IS NOT NULL""", [sensor, lo, hi])[0]["n"]  # noqa: S608 - identifiers from code; values are parameters
    row = reader.q(f"""
      WITH dirty AS (SELECT bucket FROM citypulse.rollup_dirty
                     WHERE bucket >= %(a)s AND bucket < %(b)s)
      SELECT
        (SELECT coalesce(sum(u.{c}), 0) FROM citypulse.rollup_1m u
          WHERE u.sensor = %(s)s AND u.bucket >= %(a)s AND u.bucket < %(b)s
            AND NOT EXISTS (SELECT 1 FROM dirty d WHERE d.bucket = u.bucket))
      + (SELECT count(*) FROM citypulse.raw r WHERE r.sensor = %(s)s AND r.{v} IS NOT NULL
          AND r.time >= %(lo)s AND r.time < %(a)s)
      + (SELECT count(*) FROM citypulse.raw r WHERE r.sensor = %(s)s AND r.{v} IS NOT NULL
          AND r.time >= %(b)s AND r.time < %(hi)s)
      + (SELECT coalesce(sum(m.n), 0) FROM dirty d CROSS JOIN LATERAL (
           SELECT count(*) AS n FROM citypulse.raw r WHERE r.sensor = %(s)s
             AND r.time >= %(a)s AND r.time < %(b)s AND r.time >= d.bucket
             AND r.time < d.bucket + interval '1 minute' AND r.{v} IS NOT NULL) m) AS n""",  # noqa: S608 - identifiers from code; values are parameters
        {"a": a, "b": b, "s": sensor, "lo": lo, "hi": hi})[0]
    return int(row["n"])
