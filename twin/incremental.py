"""The twin worker's incremental pass: rollups -> placement -> flows -> trips, from a watermark.

In: a psycopg connection (autocommit), the :class:`~citypulse.schema.Store` and the settings.
Out: :func:`run_pass` (what ``citypulse twin run`` does every few seconds) returns what it did
and the lag; the watermark in ``twin_watermark`` advances; :func:`expire` drops twin rows
past retention::

    run_pass(conn, store, settings)
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import psycopg

from citypulse.city.model import City
from citypulse.city.store import active as active_city
from citypulse.schema import Store
from citypulse.settings import Settings
from twin.flows import CHUNK, MINUTE, aggregate, floor_minute
from twin.trips import rebuild_trips

log = logging.getLogger(__name__)


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
    hi = floor_minute(now - timedelta(seconds=settle_s))
    mark = watermark(conn)
    if mark is None:
        row = conn.execute("SELECT min(bucket) FROM citypulse.rollup_1m "
                           "WHERE bucket >= %s", (now - timedelta(days=1),)).fetchone()
        mark = floor_minute(row[0]) if row and row[0] else hi
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
