"""The twin's state now or at any past time T: per segment, per zone, per OD hour.

In: a psycopg connection to a store the twin worker keeps aggregated, and an optional
timezone-aware ``at`` (default: now).  Out: frozen :class:`State` records whose ``rows`` are
plain dicts (JSON-ready), one per segment / zone / OD pair::

    segments_at(conn)                      # latest window, all directed segments
    zones_at(conn, at=datetime(..., tzinfo=UTC))   # what was true at T (replay)
    od(conn, hour)                         # trips between zones departing in that hour

"The latest window" is the ``window_min`` minutes (default 5) ending at the newest
aggregated minute that had ended by T (at most 15 minutes stale); values are window means
(entries and exits: sums) and ``*_trend`` is the change against the window before it.  A
segment or zone without data in the window has ``None`` values.  Read-only; any number of
callers may share a connection one at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg

from citypulse.formulas import congestion_index_sql

DEFAULT_WINDOW_MIN = 5
STALE_AFTER = timedelta(minutes=15)

_SEGMENTS = f"""
WITH a AS (
    SELECT max(bucket) AS b FROM citypulse.twin_segment_1m
    WHERE bucket <= %(t)s - interval '1 minute' AND bucket > %(t)s - %(stale)s
), x AS (
    SELECT x.*, x.bucket > a.b - %(w)s AS cur
    FROM citypulse.twin_segment_1m x, a
    WHERE x.bucket > a.b - 2 * %(w)s AND x.bucket <= a.b
), w AS (
    SELECT segment_id,
        avg(flow_veh_h) FILTER (WHERE cur) AS flow, avg(speed_kmh) FILTER (WHERE cur) AS speed,
        avg(occupancy_pct) FILTER (WHERE cur) AS occ, max(sensors) FILTER (WHERE cur) AS sensors,
        max(bucket) FILTER (WHERE cur) AS last,
        avg(flow_veh_h) FILTER (WHERE NOT cur) AS flow_prev,
        avg(speed_kmh) FILTER (WHERE NOT cur) AS speed_prev
    FROM x GROUP BY segment_id
)
SELECT s.segment_id, s.road, s.free_flow_kmh, s.capacity_veh_h, w.flow, w.speed, w.occ,
       {congestion_index_sql("w.speed", "s.free_flow_kmh")}, w.flow / s.capacity_veh_h,
       w.sensors, w.flow - w.flow_prev, w.speed - w.speed_prev, w.last, (SELECT b FROM a)
FROM citypulse.twin_segments s LEFT JOIN w USING (segment_id)
ORDER BY s.segment_id
"""  # noqa: S608 - columns and formulas from code, no input
_SEGMENT_KEYS = ("segment_id", "road", "free_flow_kmh", "capacity_veh_h", "flow_veh_h",
                 "speed_kmh", "occupancy_pct", "congestion", "volume_capacity", "sensors",
                 "flow_trend", "speed_trend", "last_bucket")

_ZONES = """
WITH a AS (
    SELECT max(bucket) AS b FROM citypulse.twin_zone_1m
    WHERE bucket <= %(t)s - interval '1 minute' AND bucket > %(t)s - %(stale)s
), x AS (
    SELECT x.*, x.bucket > a.b - %(w)s AS cur, x.bucket = a.b AS latest
    FROM citypulse.twin_zone_1m x, a
    WHERE x.bucket > a.b - 2 * %(w)s AND x.bucket <= a.b
), w AS (
    SELECT zone_id,
        avg(people) FILTER (WHERE cur) AS people,
        avg(density_per_1000m2) FILTER (WHERE cur) AS density,
        sum(entries) FILTER (WHERE cur) AS entries, sum(exits) FILTER (WHERE cur) AS exits,
        max(trucks) FILTER (WHERE latest) AS trucks, max(counters) FILTER (WHERE cur) AS counters,
        max(bucket) FILTER (WHERE cur) AS last,
        avg(people) FILTER (WHERE NOT cur) AS people_prev,
        avg(vehicles) FILTER (WHERE cur) AS vehicles
    FROM x GROUP BY zone_id
)
SELECT z.zone_id, z.name, z.zone_type, z.area_m2, z.density_limit, w.people, w.density,
       w.density / NULLIF(z.density_limit, 0), w.entries, w.exits,
       w.entries - w.exits, coalesce(w.trucks, 0), w.vehicles, w.counters,
       w.people - w.people_prev, w.last, (SELECT b FROM a)
FROM citypulse.twin_zones z LEFT JOIN w USING (zone_id)
ORDER BY z.zone_id
"""
_ZONE_KEYS = ("zone_id", "name", "zone_type", "area_m2", "density_limit_per_1000m2", "people",
              "density_per_1000m2", "density_ratio", "entries", "exits", "net_in", "trucks",
              "vehicles", "counters", "people_trend", "last_bucket")

_FLOWS = """
SELECT zone_a, zone_b, sum(persons) FROM citypulse.twin_zone_flow_1m
WHERE bucket > %(b)s - %(w)s AND bucket <= %(b)s
GROUP BY 1, 2 ORDER BY 3 DESC
"""

_GATES = """
SELECT gate_id, min(zone_id), sum(entries), sum(exits) FROM citypulse.twin_gate_1m
WHERE bucket > %(b)s - %(w)s AND bucket <= %(b)s
GROUP BY 1 ORDER BY 1
"""

_OD = """
SELECT origin_zone, dest_zone, trips FROM citypulse.twin_od_hourly
WHERE hour = %s ORDER BY trips DESC, origin_zone, dest_zone
"""


@dataclass(frozen=True)
class State:
    """One state query's answer: the time asked, the window used, the rows."""

    at: datetime
    bucket: datetime | None  # newest minute in the window (None: no data by then)
    window_s: int
    rows: tuple[dict, ...]
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """JSON-friendly form (datetimes as ISO-8601 strings)."""
        return _jsonable({"at": self.at, "bucket": self.bucket, "window_s": self.window_s,
                          "rows": list(self.rows), **self.extra})


def _jsonable(v: object) -> object:
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return v


def _at(at: datetime | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    if at.tzinfo is None:
        raise ValueError("at must be timezone-aware")
    return at


def segments_at(conn: psycopg.Connection, at: datetime | None = None,
                window_min: int = DEFAULT_WINDOW_MIN) -> State:
    """Per directed segment: flow, speed, occupancy, congestion and trends at ``at``."""
    t = _at(at)
    w = timedelta(minutes=window_min)
    rows = conn.execute(_SEGMENTS, {"t": t, "w": w, "stale": STALE_AFTER}).fetchall()
    bucket = rows[0][-1] if rows else None
    return State(t, bucket, int(w.total_seconds()),
                 tuple(dict(zip(_SEGMENT_KEYS, r[:-1], strict=True)) for r in rows))


def zones_at(conn: psycopg.Connection, at: datetime | None = None,
             window_min: int = DEFAULT_WINDOW_MIN) -> State:
    """Per zone: people, density, entries/exits, trucks, vehicles and trends.

    Extra: ``flows`` (estimated net flows between neighbouring zones in the window) and
    ``gates`` (entries/exits per metro gate in the window).
    """
    t = _at(at)
    w = timedelta(minutes=window_min)
    rows = conn.execute(_ZONES, {"t": t, "w": w, "stale": STALE_AFTER}).fetchall()
    bucket = rows[0][-1] if rows else None
    flows, gates = [], []
    if bucket is not None:
        flows = [{"from": a, "to": b, "persons": p}
                 for a, b, p in conn.execute(_FLOWS, {"b": bucket, "w": w}).fetchall()]
        gates = [{"gate_id": g, "zone_id": z, "entries": i, "exits": o}
                 for g, z, i, o in conn.execute(_GATES, {"b": bucket, "w": w}).fetchall()]
    return State(t, bucket, int(w.total_seconds()),
                 tuple(dict(zip(_ZONE_KEYS, r[:-1], strict=True)) for r in rows),
                 {"flows": flows, "gates": gates})


def od(conn: psycopg.Connection, hour: datetime | None = None) -> State:
    """Truck trips between zones departing in ``hour`` (default: the current hour).

    Rows: origin_zone, dest_zone, trips.  Extra: ``total``, ``previous_total`` (the hour
    before), ``trend`` (their difference) and ``matrix`` (origin -> dest -> trips).
    """
    h = _at(hour).astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    rows = conn.execute(_OD, (h,)).fetchall()
    prev = conn.execute("SELECT coalesce(sum(trips), 0) FROM citypulse.twin_od_hourly "
                        "WHERE hour = %s", (h - timedelta(hours=1),)).fetchone()[0]
    matrix: dict[str, dict[str, int]] = {}
    for o, d, n in rows:
        matrix.setdefault(o, {})[d] = n
    total = sum(r[2] for r in rows)
    return State(h, h, 3600,
                 tuple({"origin_zone": o, "dest_zone": d, "trips": n} for o, d, n in rows),
                 {"total": total, "previous_total": int(prev), "trend": total - int(prev),
                  "matrix": matrix})


def aggregation_lag_s(conn: psycopg.Connection, now: datetime | None = None) -> float | None:
    """Seconds between now and the twin's watermark (None before the first pass)."""
    row = conn.execute("SELECT upto FROM citypulse.twin_watermark WHERE name = 'aggregate'"
                       ).fetchone()
    if not row:
        return None
    return ((now or datetime.now(UTC)) - row[0]).total_seconds()
