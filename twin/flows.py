"""Flows: per-minute state of segments, zones and trucks, trips and hourly OD, from the rollups.

In: a psycopg connection (autocommit) to a migrated store whose sensors are placed
(:mod:`twin.placement`) and a half-open minute range ``[lo, hi)``.  Out: rows upserted into
the twin tables; :func:`aggregate` returns counts.  Idempotent: a range may be aggregated
again (late readings) and gives the same rows.  :func:`run_pass` is one incremental step of
the worker (refresh the rollups, place new sensors, aggregate from the watermark, rebuild
trips over the look-back window)::

    aggregate(conn, lo, hi)            # segments, zones, trucks, zone flows
    rebuild_trips(conn, lo, hi)        # visits, trips, OD per hour
    run_pass(conn, store, settings)    # what `citypulse twin run` does every few seconds

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
- truck visit: a run of consecutive minutes in one zone (a gap > 5 min ends it); a stop is
  a visit to a port, logistics or industrial zone in which the truck stood still (a minute
  under 5 km/h); a trip goes from one stop to the next stop in another zone (depart = end
  of the first stop, arrive = start of the next); OD counts trips by departure hour.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import psycopg

from citypulse.city.model import DEPOT_TYPES, City
from citypulse.city.store import active as active_city
from citypulse.schema import Store
from citypulse.settings import Settings

log = logging.getLogger(__name__)

MINUTE = timedelta(minutes=1)
STOP_SPEED_KMH = 5.0
VISIT_GAP = timedelta(minutes=5)
CHUNK = timedelta(hours=1)

_SEGMENTS = """
WITH a AS (
    SELECT r.bucket, p.segment_id, count(*)::int AS sensors, avg(r.s0) AS vehicles,
           sum(r.s1) / NULLIF(sum(r.c1), 0) AS speed, sum(r.s2) / NULLIF(sum(r.c2), 0) AS occ
    FROM citypulse.rollup_1m r
    JOIN citypulse.sensor_placement p ON p.sensor = r.sensor
    WHERE r.bucket >= %(lo)s AND r.bucket < %(hi)s
      AND p.placement = 'segment' AND p.status = 'placed'
    GROUP BY 1, 2
)
INSERT INTO citypulse.twin_segment_1m AS t (bucket, segment_id, sensors, vehicles, flow_veh_h,
    speed_kmh, occupancy_pct, congestion)
SELECT a.bucket, a.segment_id, a.sensors, a.vehicles, a.vehicles * 60, a.speed, a.occ,
       greatest(0, least(1, 1 - a.speed / s.free_flow_kmh))
FROM a JOIN citypulse.twin_segments s USING (segment_id)
ON CONFLICT (segment_id, bucket) DO UPDATE SET sensors = EXCLUDED.sensors,
    vehicles = EXCLUDED.vehicles, flow_veh_h = EXCLUDED.flow_veh_h,
    speed_kmh = EXCLUDED.speed_kmh, occupancy_pct = EXCLUDED.occupancy_pct,
    congestion = EXCLUDED.congestion
"""  # congestion: citypulse.formulas.CONGESTION_SQL (tests/city/test_formulas.py holds it)

_TRUCK_MINUTES = """
SELECT r.bucket, r.sensor, r.s0 / r.c0 AS lon, r.s1 / r.c1 AS lat,
       r.s2 / NULLIF(r.c2, 0) AS speed, r.s4 / NULLIF(r.c4, 0) AS load
FROM citypulse.rollup_1m r
JOIN citypulse.sensor_placement p ON p.sensor = r.sensor
WHERE r.bucket >= %(lo)s AND r.bucket < %(hi)s AND p.placement = 'vehicle'
  AND r.c0 > 0 AND r.c1 > 0
"""

_ZONES = """
WITH people AS (
    SELECT r.bucket, p.zone_id, count(*)::int AS counters,
           sum(r.s0 / NULLIF(r.c0, 0)) AS people, sum(r.s1) AS entries, sum(r.s2) AS exits
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
SELECT j.bucket, j.zone_id, j.counters, j.people, 1000 * j.people / NULLIF(z.area_m2, 0),
       j.entries, j.exits, j.trucks, j.vehicles
FROM j JOIN citypulse.twin_zones z USING (zone_id)
ON CONFLICT (zone_id, bucket) DO UPDATE SET counters = EXCLUDED.counters,
    people = EXCLUDED.people, density_per_1000m2 = EXCLUDED.density_per_1000m2,
    entries = EXCLUDED.entries, exits = EXCLUDED.exits, trucks = EXCLUDED.trucks,
    vehicles = EXCLUDED.vehicles
"""  # density: citypulse.formulas.DENSITY_SQL

_GATES = """
INSERT INTO citypulse.twin_gate_1m (bucket, gate_id, zone_id, counters, entries, exits)
SELECT r.bucket, p.gate_id, min(p.zone_id), count(*)::int, sum(r.s1), sum(r.s2)
FROM citypulse.rollup_1m r
JOIN citypulse.sensor_placement p ON p.sensor = r.sensor
WHERE r.bucket >= %(lo)s AND r.bucket < %(hi)s AND p.gate_id IS NOT NULL
  AND p.status = 'placed'
GROUP BY 1, 2
ON CONFLICT (gate_id, bucket) DO UPDATE SET zone_id = EXCLUDED.zone_id,
    counters = EXCLUDED.counters, entries = EXCLUDED.entries, exits = EXCLUDED.exits
"""

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


def _minute(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(second=0, microsecond=0)


def aggregate(conn: psycopg.Connection, lo: datetime, hi: datetime,
              city: City | None = None) -> AggregateResult:
    """Aggregate the minute buckets in ``[lo, hi)`` into the twin's per-minute tables."""
    city = city or active_city(conn)
    lo, hi = _minute(lo), _minute(hi)
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


def truck_visits(frame: pl.DataFrame) -> pl.DataFrame:
    """Zone visits from per-minute truck rows (bucket, sensor, zone_id, speed_kmh).

    Returns sensor, zone_id, entered, exited, dwell_s, min_speed: one row per run of
    consecutive minutes in the same zone (a minute outside every zone or a gap longer
    than five minutes ends a run).
    """
    f = frame.sort("sensor", "bucket").with_columns(
        prev_zone=pl.col("zone_id").shift(1).over("sensor"),
        gap=(pl.col("bucket") - pl.col("bucket").shift(1).over("sensor")),
    )
    new_run = (pl.col("prev_zone").is_null() | (pl.col("prev_zone") != pl.col("zone_id"))
               | pl.col("gap").is_null() | (pl.col("gap") > VISIT_GAP))
    f = f.with_columns(run=new_run.cast(pl.Int32).cum_sum().over("sensor"))
    v = (f.filter(pl.col("zone_id").is_not_null())
          .group_by("sensor", "run")
          .agg(zone_id=pl.col("zone_id").first(), entered=pl.col("bucket").min(),
               last=pl.col("bucket").max(), min_speed=pl.col("speed_kmh").min())
          .with_columns(exited=pl.col("last") + MINUTE)
          .with_columns(dwell_s=(pl.col("exited") - pl.col("entered")).dt.total_seconds())
          .sort("sensor", "entered"))
    return v.select("sensor", "zone_id", "entered", "exited", "dwell_s", "min_speed")


_TRIPS = """
WITH stops AS (
    SELECT v.sensor, v.zone_id, v.entered, v.exited
    FROM citypulse.twin_truck_visits v JOIN citypulse.twin_zones z USING (zone_id)
    WHERE z.zone_type = ANY(%(depot_types)s) AND v.min_speed < %(stop_speed)s
      AND v.exited >= %(since)s
), t AS (
    SELECT sensor, zone_id AS origin_zone, exited AS depart,
           lead(zone_id) OVER w AS dest_zone, lead(entered) OVER w AS arrive
    FROM stops WINDOW w AS (PARTITION BY sensor ORDER BY entered)
)
INSERT INTO citypulse.twin_trips (sensor, origin_zone, dest_zone, depart, arrive)
SELECT sensor, origin_zone, dest_zone, depart, arrive FROM t
WHERE dest_zone IS NOT NULL AND dest_zone <> origin_zone AND depart >= %(since)s
"""

_OD_HOURS = """
INSERT INTO citypulse.twin_od_hourly (hour, origin_zone, dest_zone, trips)
SELECT date_trunc('hour', depart), origin_zone, dest_zone, count(*)
FROM citypulse.twin_trips WHERE depart >= %(hour)s GROUP BY 1, 2, 3
"""


def _merge_carry(visits: pl.DataFrame, carry: pl.DataFrame, lo: datetime) -> pl.DataFrame:
    """Join each truck's first visit in the window to its stored visit still open at ``lo``."""
    carry = carry.with_columns(exited=pl.min_horizontal(pl.col("exited"), pl.lit(lo)))
    first = visits.group_by("sensor").agg(pl.col("entered").min().alias("w_entered"))
    c = carry.join(visits.join(first, on="sensor").filter(
        pl.col("entered") == pl.col("w_entered")).select(
        "sensor", pl.col("zone_id").alias("w_zone"), "w_entered",
        pl.col("min_speed").alias("w_min")), on="sensor", how="left")
    joins = ((pl.col("w_zone") == pl.col("zone_id"))
             & (pl.col("w_entered") - pl.col("exited") + MINUTE <= VISIT_GAP)).fill_null(False)
    c = c.with_columns(merge=joins)
    merged = c.filter("merge").select("sensor", pl.col("entered").alias("c_entered"),
                                      pl.col("min_speed").alias("c_min"), "w_entered")
    kept = c.filter(~pl.col("merge")).select("sensor", "zone_id", "entered", "exited",
                                              "min_speed")
    v = visits.join(merged, left_on=["sensor", "entered"], right_on=["sensor", "w_entered"],
                    how="left").with_columns(
        entered=pl.coalesce("c_entered", "entered"),
        min_speed=pl.min_horizontal("min_speed", "c_min"),
    ).select("sensor", "zone_id", "entered", "exited", "min_speed")
    out = pl.concat([kept, v.cast(kept.schema)], how="vertical")
    return out.with_columns(
        dwell_s=(pl.col("exited") - pl.col("entered")).dt.total_seconds().cast(pl.Float64))


_VISIT_SCHEMA = {"sensor": pl.Int32, "zone_id": pl.Utf8, "entered": pl.Datetime("us", "UTC"),
                 "exited": pl.Datetime("us", "UTC"), "min_speed": pl.Float64}


def rebuild_trips(conn: psycopg.Connection, lo: datetime, hi: datetime,
                  city: City | None = None, since: datetime | None = None) -> dict:
    """Visits from truck minutes in ``[lo, hi)``, then trips departing since ``since``.

    Visits continue the stored visit each truck was in at ``lo`` (so the worker can feed
    small windows); trips and the OD hours from ``since`` (default ``lo``) on are rebuilt
    from the stored stops (set-based SQL).
    """
    del city  # zones come from citypulse.twin_zones
    lo, hi = _minute(lo), _minute(hi)
    since = _minute(since) if since else lo
    rows = conn.execute(
        "SELECT bucket, sensor, zone_id, speed_kmh FROM citypulse.twin_truck_1m "
        "WHERE bucket >= %s AND bucket < %s", (lo, hi)).fetchall()
    schema = {"bucket": pl.Datetime("us", "UTC"), "sensor": pl.Int32, "zone_id": pl.Utf8,
              "speed_kmh": pl.Float64}
    frame = pl.DataFrame(rows, schema=schema, orient="row")
    visits = truck_visits(frame).select(list(_VISIT_SCHEMA))
    p = {"lo": lo, "cut": lo - VISIT_GAP, "since": since, "hour": since.replace(minute=0),
         "depot_types": list(DEPOT_TYPES), "stop_speed": STOP_SPEED_KMH}
    with conn.transaction(), conn.cursor() as cur:
        carry = cur.execute(
            "DELETE FROM citypulse.twin_truck_visits WHERE exited > %(cut)s "
            "RETURNING sensor, zone_id, entered, exited, min_speed", p).fetchall()
        carry_df = pl.DataFrame(carry, schema=_VISIT_SCHEMA, orient="row").filter(
            pl.col("entered") < lo)
        merged = _merge_carry(visits, carry_df, lo)
        with cur.copy("COPY citypulse.twin_truck_visits (sensor, zone_id, entered, exited, "
                      "dwell_s, min_speed) FROM STDIN") as copy:
            for r in merged.select("sensor", "zone_id", "entered", "exited", "dwell_s",
                                   "min_speed").iter_rows():
                copy.write_row(r)
        cur.execute("DELETE FROM citypulse.twin_trips WHERE depart >= %(since)s", p)
        trips = cur.execute(_TRIPS, p).rowcount
        cur.execute("DELETE FROM citypulse.twin_od_hourly WHERE hour >= %(hour)s", p)
        cur.execute(_OD_HOURS, p)
    return {"truck_minutes": frame.height, "visits": merged.height, "trips": trips}


def watermark(conn: psycopg.Connection, name: str = "aggregate") -> datetime | None:
    """Minute buckets before this are aggregated (None before the first pass)."""
    row = conn.execute("SELECT upto FROM citypulse.twin_watermark WHERE name = %s",
                       (name,)).fetchone()
    return row[0] if row else None


def _set_watermark(conn: psycopg.Connection, upto: datetime, name: str = "aggregate") -> None:
    conn.execute(
        """INSERT INTO citypulse.twin_watermark (name, upto, updated_at) VALUES (%s, %s, now())
           ON CONFLICT (name) DO UPDATE SET upto = EXCLUDED.upto, updated_at = now()""",
        (name, upto))


def expire(conn: psycopg.Connection, settings: Settings, now: datetime) -> int:
    """Drop truck minutes, visits and zone flows past raw retention; state past rollup's."""
    raw_cut = now - timedelta(days=settings.raw_retention_days)
    roll_cut = now - timedelta(days=settings.rollup_retention_days)
    n = 0
    with conn.transaction():
        for stmt, cut in (
            ("DELETE FROM citypulse.twin_truck_1m WHERE bucket < %s", raw_cut),
            ("DELETE FROM citypulse.twin_zone_flow_1m WHERE bucket < %s", raw_cut),
            ("DELETE FROM citypulse.twin_truck_visits WHERE exited < %s", raw_cut),
            ("DELETE FROM citypulse.twin_segment_1m WHERE bucket < %s", roll_cut),
            ("DELETE FROM citypulse.twin_zone_1m WHERE bucket < %s", roll_cut),
        ):
            n += conn.execute(stmt, (cut,)).rowcount
    return n


def run_pass(conn: psycopg.Connection, store: Store, settings: Settings,
             now: datetime | None = None, settle_s: float = 5.0, place: bool = True,
             city: City | None = None, recompute: bool = True) -> dict:
    """One incremental pass of the worker; returns what it did (and the lag in seconds).

    ``place``: place new sensors first.  ``recompute``: re-aggregate the trailing
    ``settings.twin_recompute_s`` (late readings); the worker does it once a minute.
    """
    from twin.placement import place_sensors

    city = city or active_city(conn)
    now = now or datetime.now(UTC)
    out: dict = {}
    store.refresh_rollups(conn, settle_s)
    if place:
        rep = place_sensors(conn, city, settings.twin_place_tolerance_m)
        out["placed"] = rep.examined
        if rep.unplaceable:
            log.warning("%d sensors unplaceable, e.g. %s", len(rep.unplaceable),
                        rep.unplaceable[:3])
    hi = _minute(now - timedelta(seconds=settle_s))
    mark = watermark(conn)
    if mark is None:
        row = conn.execute("SELECT min(bucket) FROM citypulse.rollup_1m "
                           "WHERE bucket >= %s", (now - timedelta(days=1),)).fetchone()
        mark = _minute(row[0]) if row and row[0] else hi
    # the minute before the watermark again (readings that arrived during the last pass);
    # with recompute, the whole trailing window (late readings)
    back = timedelta(seconds=settings.twin_recompute_s) if recompute else MINUTE
    lo = min(mark, hi - back, mark - MINUTE)
    res = aggregate(conn, lo, hi, city)
    # truck visits continue from the last pass (2 minutes again for late positions); trips
    # are rebuilt from stored stops over the look-back window
    trip_lo = min(mark, hi) - 2 * MINUTE
    since = min(trip_lo, hi - timedelta(hours=settings.twin_trip_lookback_h))
    t = trip_lo
    trips = {"truck_minutes": 0, "visits": 0, "trips": 0}
    while t < hi:  # hour by hour when catching up
        u = min(t + CHUNK, hi)
        for k, v in rebuild_trips(conn, t, u, city, since=since).items():
            trips[k] += v
        t = u
    out.update(trips)
    if recompute:
        out["expired"] = expire(conn, settings, now)
    _set_watermark(conn, hi)
    out.update(segment_rows=res.segment_rows, zone_rows=res.zone_rows,
               truck_rows=res.truck_rows, flow_rows=res.flow_rows,
               lo=lo.isoformat(), hi=hi.isoformat(),
               lag_s=(datetime.now(UTC) - hi).total_seconds())
    return out
