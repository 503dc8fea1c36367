"""Flows: per-minute state of segments, zones, gates and trucks, from the rollups.

In: a psycopg connection (autocommit) to a migrated store whose sensors are placed
(:mod:`twin.placement`) and a half-open minute range ``[lo, hi)``.  Out: rows upserted into
the twin's per-minute tables; :func:`aggregate` returns counts.  Idempotent: a range may be
aggregated again (late readings) and gives the same rows.  Truck visits, trips and OD are
:mod:`twin.trips`; the worker's incremental pass is :mod:`twin.incremental`::

    aggregate(conn, lo, hi)            # segments, zones, trucks, zone flows

Definitions (all per one-minute bucket):
- segment: ``vehicles`` = mean over the segment's traffic sensors of vehicles counted in the
  minute; ``flow_veh_h`` = 60 x vehicles; ``speed_kmh`` and ``occupancy_pct`` = mean of the
  readings; ``congestion`` = 1 - speed / free-flow speed, clipped to [0, 1].
- zone: ``people`` = sum over the zone's counters of their mean ``people_count``;
  ``density_per_1000m2`` = 1000 x people / area; ``entries``/``exits`` = sums over the
  minute; ``trucks`` = trackers whose mean position lies in the zone; ``vehicles`` = sum
  over the segments whose midpoint lies in the zone of flow / speed x length.
- zone flow a -> b (neighbours, an estimate): a's net outflow (exits - entries) split among
  its neighbours with a net inflow, in proportion to their inflows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg

from citypulse.catalogue import columns
from citypulse.city.model import City
from citypulse.city.store import active as active_city
from citypulse.formulas import DENSITY_SQL, congestion_index_sql

log = logging.getLogger(__name__)

MINUTE = timedelta(minutes=1)
CHUNK = timedelta(hours=1)
# rollup columns (sum s*, count c*) of the metrics read here, from the catalogue
_TS, _TC = columns("traffic", "s"), columns("traffic", "c")
_LS, _LC = columns("logistics", "s"), columns("logistics", "c")
_PS, _PC = columns("people", "s"), columns("people", "c")

_SEGMENTS = f"""
WITH a AS (
    SELECT r.bucket, p.segment_id, count(*)::int AS sensors,
           avg(r.{_TS["vehicle_count"]}) AS vehicles,
           sum(r.{_TS["speed_kmh"]}) / NULLIF(sum(r.{_TC["speed_kmh"]}), 0) AS speed,
           sum(r.{_TS["occupancy_pct"]}) / NULLIF(sum(r.{_TC["occupancy_pct"]}), 0) AS occ
    FROM citypulse.rollup_1m r
    JOIN citypulse.sensor_placement p ON p.sensor = r.sensor
    WHERE r.bucket >= %(lo)s AND r.bucket < %(hi)s
      AND p.placement = 'segment' AND p.status = 'placed'
    GROUP BY 1, 2
)
INSERT INTO citypulse.twin_segment_1m AS t (bucket, segment_id, sensors, vehicles, flow_veh_h,
    speed_kmh, occupancy_pct, congestion)
SELECT a.bucket, a.segment_id, a.sensors, a.vehicles, a.vehicles * 60, a.speed, a.occ,
       {congestion_index_sql("a.speed", "s.free_flow_kmh")}
FROM a JOIN citypulse.twin_segments s USING (segment_id)
ON CONFLICT (segment_id, bucket) DO UPDATE SET sensors = EXCLUDED.sensors,
    vehicles = EXCLUDED.vehicles, flow_veh_h = EXCLUDED.flow_veh_h,
    speed_kmh = EXCLUDED.speed_kmh, occupancy_pct = EXCLUDED.occupancy_pct,
    congestion = EXCLUDED.congestion
"""  # noqa: S608 - columns and formulas from code, no input; congestion: citypulse.formulas.CONGESTION_SQL (tests/city/test_formulas.py holds it)

_TRUCK_MINUTES = f"""
SELECT r.bucket, r.sensor, r.{_LS["lon"]} / r.{_LC["lon"]} AS lon,
       r.{_LS["lat"]} / r.{_LC["lat"]} AS lat,
       r.{_LS["speed_kmh"]} / NULLIF(r.{_LC["speed_kmh"]}, 0) AS speed,
       r.{_LS["load_kg"]} / NULLIF(r.{_LC["load_kg"]}, 0) AS load
FROM citypulse.rollup_1m r
JOIN citypulse.sensor_placement p ON p.sensor = r.sensor
WHERE r.bucket >= %(lo)s AND r.bucket < %(hi)s AND p.placement = 'vehicle'
  AND r.{_LC["lon"]} > 0 AND r.{_LC["lat"]} > 0
"""  # noqa: S608 - columns and formulas from code, no input

_ZONES = f"""
WITH people AS (
    SELECT r.bucket, p.zone_id, count(*)::int AS counters,
           sum(r.{_PS["people_count"]} / NULLIF(r.{_PC["people_count"]}, 0)) AS people,
           sum(r.{_PS["entries"]}) AS entries, sum(r.{_PS["exits"]}) AS exits
    FROM citypulse.rollup_1m r
    JOIN citypulse.sensor_placement p ON p.sensor = r.sensor
    WHERE r.bucket >= %(lo)s AND r.bucket < %(hi)s
      AND p.placement = 'zone' AND p.status = 'placed'
    GROUP BY 1, 2
), trucks AS (
    SELECT bucket, zone_id, count(*)::int AS trucks
    FROM citypulse.twin_truck_1m
    WHERE bucket >= %(lo)s AND bucket < %(hi)s AND zone_id IS NOT NULL
    GROUP BY 1, 2
), veh AS (
    SELECT x.bucket, s.zone_id,
           sum(x.flow_veh_h / NULLIF(x.speed_kmh, 0) * s.length_m / 1000) AS vehicles
    FROM citypulse.twin_segment_1m x JOIN citypulse.twin_segments s USING (segment_id)
    WHERE x.bucket >= %(lo)s AND x.bucket < %(hi)s AND s.zone_id IS NOT NULL
    GROUP BY 1, 2
), j AS (
    SELECT bucket, zone_id, sum(counters)::int AS counters, sum(people) AS people,
           sum(entries) AS entries, sum(exits) AS exits, sum(trucks)::int AS trucks,
           sum(vehicles) AS vehicles
    FROM (SELECT bucket, zone_id, counters, people, entries, exits, 0 AS trucks,
                 NULL::float8 AS vehicles FROM people
          UNION ALL SELECT bucket, zone_id, 0, NULL, NULL, NULL, trucks, NULL FROM trucks
          UNION ALL SELECT bucket, zone_id, 0, NULL, NULL, NULL, 0, vehicles FROM veh) u
    GROUP BY 1, 2
)
INSERT INTO citypulse.twin_zone_1m (bucket, zone_id, counters, people, density_per_1000m2,
    entries, exits, trucks, vehicles)
SELECT j.bucket, j.zone_id, j.counters, j.people,
       {DENSITY_SQL.format(people="j.people", area="z.area_m2")},
       j.entries, j.exits, j.trucks, j.vehicles
FROM j JOIN citypulse.twin_zones z USING (zone_id)
ON CONFLICT (zone_id, bucket) DO UPDATE SET counters = EXCLUDED.counters,
    people = EXCLUDED.people, density_per_1000m2 = EXCLUDED.density_per_1000m2,
    entries = EXCLUDED.entries, exits = EXCLUDED.exits, trucks = EXCLUDED.trucks,
    vehicles = EXCLUDED.vehicles
"""  # noqa: S608 - columns and formulas from code, no input; density: citypulse.formulas.DENSITY_SQL

_GATES = f"""
INSERT INTO citypulse.twin_gate_1m (bucket, gate_id, zone_id, counters, entries, exits)
SELECT r.bucket, p.gate_id, min(p.zone_id), count(*)::int, sum(r.{_PS["entries"]}),
       sum(r.{_PS["exits"]})
FROM citypulse.rollup_1m r
JOIN citypulse.sensor_placement p ON p.sensor = r.sensor
WHERE r.bucket >= %(lo)s AND r.bucket < %(hi)s AND p.gate_id IS NOT NULL
  AND p.status = 'placed'
GROUP BY 1, 2
ON CONFLICT (gate_id, bucket) DO UPDATE SET zone_id = EXCLUDED.zone_id,
    counters = EXCLUDED.counters, entries = EXCLUDED.entries, exits = EXCLUDED.exits
"""  # noqa: S608 - columns and formulas from code, no input

_ZONE_FLOWS = """
WITH z AS (
    SELECT bucket, zone_id, coalesce(entries, 0) - coalesce(exits, 0) AS net
    FROM citypulse.twin_zone_1m
    WHERE bucket >= %(lo)s AND bucket < %(hi)s AND counters > 0
), pairs AS (
    SELECT zone_a AS a, zone_b AS b FROM citypulse.twin_zone_neighbours
    UNION ALL SELECT zone_b, zone_a FROM citypulse.twin_zone_neighbours
), e AS (
    SELECT za.bucket, p.a, p.b, -za.net AS out_a, zb.net AS in_b
    FROM pairs p
    JOIN z za ON za.zone_id = p.a
    JOIN z zb ON zb.zone_id = p.b AND zb.bucket = za.bucket
    WHERE za.net < 0 AND zb.net > 0
)
INSERT INTO citypulse.twin_zone_flow_1m (bucket, zone_a, zone_b, persons)
SELECT bucket, a, b, out_a * in_b / sum(in_b) OVER (PARTITION BY bucket, a) FROM e
"""


@dataclass(frozen=True)
class AggregateResult:
    """Rows written by one :func:`aggregate` call."""

    segment_rows: int
    zone_rows: int
    truck_rows: int
    flow_rows: int


def floor_minute(t: datetime) -> datetime:
    """``t`` in UTC, down to its minute."""
    return t.astimezone(UTC).replace(second=0, microsecond=0)


def aggregate(conn: psycopg.Connection, lo: datetime, hi: datetime,
              city: City | None = None) -> AggregateResult:
    """Aggregate the minute buckets in ``[lo, hi)`` into the twin's per-minute tables."""
    city = city or active_city(conn)
    lo, hi = floor_minute(lo), floor_minute(hi)
    segs = zones = trucks = flows = 0
    t = lo
    while t < hi:
        u = min(t + CHUNK, hi)
        p = {"lo": t, "hi": u}
        with conn.transaction():
            segs += conn.execute(_SEGMENTS, p).rowcount
            trucks += _trucks(conn, t, u, city)
            zones += conn.execute(_ZONES, p).rowcount
            conn.execute(_GATES, p)
            conn.execute("DELETE FROM citypulse.twin_zone_flow_1m "
                         "WHERE bucket >= %(lo)s AND bucket < %(hi)s", p)
            flows += conn.execute(_ZONE_FLOWS, p).rowcount
        if hi - lo > CHUNK:  # catching up: show progress
            log.info("twin aggregated up to %s (%s to go)", u.isoformat(), hi - u)
        t = u
    return AggregateResult(segs, zones, trucks, flows)


def _trucks(conn: psycopg.Connection, lo: datetime, hi: datetime, city: City) -> int:
    """Mean position per truck and minute, with the zone it falls in (point in polygon)."""
    with conn.cursor() as cur:
        cur.execute(_TRUCK_MINUTES, {"lo": lo, "hi": hi})
        rows = cur.fetchall()
        if not rows:
            return 0
        lon = np.fromiter((r[2] for r in rows), float, len(rows))
        lat = np.fromiter((r[3] for r in rows), float, len(rows))
        zones = city.zones_of(lon, lat)
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS _truck_stage (LIKE citypulse.twin_truck_1m) "
                    "ON COMMIT DELETE ROWS")
        cur.execute("TRUNCATE _truck_stage")
        with cur.copy("COPY _truck_stage (bucket, sensor, lon, lat, speed_kmh, load_kg, zone_id) "
                      "FROM STDIN") as copy:
            for r, z in zip(rows, zones, strict=True):
                copy.write_row((*r, z))
        cur.execute(
            """INSERT INTO citypulse.twin_truck_1m SELECT * FROM _truck_stage
               ON CONFLICT (sensor, bucket) DO UPDATE SET lon = EXCLUDED.lon,
                   lat = EXCLUDED.lat, speed_kmh = EXCLUDED.speed_kmh,
                   load_kg = EXCLUDED.load_kg, zone_id = EXCLUDED.zone_id""")
    return len(rows)
