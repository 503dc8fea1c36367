"""Trips: truck visits to zones, trips between stops and the hourly OD, from truck minutes.

In: a psycopg connection (autocommit) whose ``twin_truck_1m`` is filled
(:func:`twin.flows.aggregate`) and a half-open minute range ``[lo, hi)``.  Out: rows in
``twin_truck_visits``, ``twin_trips`` and ``twin_od_hourly``::

    rebuild_trips(conn, lo, hi)        # visits, trips, OD per hour

Definitions: a truck visit is a run of consecutive minutes in one zone (a gap > 5 min ends
it); a stop is a visit to a port, logistics or industrial zone in which the truck stood
still (a minute under 5 km/h); a trip goes from one stop to the next stop in another zone
(depart = end of the first stop, arrive = start of the next); OD counts trips by departure
hour.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl
import psycopg

from citypulse.city.model import DEPOT_TYPES, City
from twin.flows import MINUTE, floor_minute

STOP_SPEED_KMH = 5.0
VISIT_GAP = timedelta(minutes=5)


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
    lo, hi = floor_minute(lo), floor_minute(hi)
    since = floor_minute(since) if since else lo
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
