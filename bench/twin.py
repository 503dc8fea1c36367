"""``citypulse bench twin``: state-query latency and aggregation throughput/lag, as JSON.

In: the scale (sensors, hours of history, live minutes) and optionally a database URL (by
default a private PostgreSQL in a temporary directory, removed afterwards).  Out: a dict of
figures.  History (one reading a minute from ``history_sensors`` sensors) is written into
``citypulse.raw`` by SQL, rolled up with ``Store.refresh_window`` and aggregated by the twin; the last ``live_minutes`` minutes
come from every sensor through ``Store.write_rows`` and are aggregated the way the worker
does, which gives the aggregation's time per minute of readings and so its lag.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import shapely
from rich.console import Console

from citypulse import schema
from citypulse.catalogue import MAX_SLOTS
from citypulse.city import build_city
from citypulse.city.model import City
from citypulse.settings import Settings
from twin import state
from twin.flows import aggregate
from twin.placement import place_sensors
from twin.trips import rebuild_trips

KIND_SHARES = (("traffic", 0.6), ("people", 0.25), ("logistics", 0.05), ("air", 0.10))

_HISTORY = """
INSERT INTO citypulse.raw (time, sensor, seq, v0, v1, v2)
SELECT m + interval '30 seconds', s.id, 0, v.a, v.b, v.c
FROM generate_series(%(lo)s::timestamptz, %(hi)s::timestamptz - interval '1 minute',
                     interval '1 minute') AS m
CROSS JOIN (SELECT id, kind, lon, lat FROM citypulse.sensors WHERE id <= %(n)s) s
CROSS JOIN LATERAL (SELECT
    CASE s.kind WHEN 'traffic' THEN round(random() * 20)
                WHEN 'people' THEN round(random() * 400)
                WHEN 'logistics' THEN s.lon + (random() - 0.5) * 0.002
                ELSE random() * 80 END AS a,
    CASE s.kind WHEN 'traffic' THEN 15 + random() * 45
                WHEN 'people' THEN round(random() * 20)
                WHEN 'logistics' THEN s.lat + (random() - 0.5) * 0.002
                ELSE random() * 120 END AS b,
    CASE s.kind WHEN 'traffic' THEN random() * 60
                WHEN 'people' THEN round(random() * 20)
                WHEN 'logistics' THEN random() * 60
                ELSE random() * 100 END AS c
    WHERE s.id > 0) v
ON CONFLICT DO NOTHING
"""


def _positions(city: City, kinds: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n = len(kinds)
    x = np.empty(n)
    y = np.empty(n)
    on_road = np.isin(kinds, ("traffic", "logistics"))
    geoms = city.metric("segments").geometry.values
    idx = rng.integers(0, len(geoms), on_road.sum())
    pts = shapely.line_interpolate_point(geoms[idx], rng.uniform(0.05, 0.95, len(idx)),
                                         normalized=True)
    x[on_road], y[on_road] = shapely.get_x(pts), shapely.get_y(pts)
    k = (~on_road).sum()
    if city.name == "dishui":  # around the lake
        cx, cy = city.to_metric(121.929, 30.899)
        r = rng.uniform(1400, 5100, k)
        b = rng.uniform(0, 2 * np.pi, k)
        x[~on_road], y[~on_road] = cx + r * np.sin(b), cy + r * np.cos(b)
    else:  # anywhere in the city's zones
        x0, y0, x1, y1 = city.metric("zones").total_bounds
        x[~on_road], y[~on_road] = rng.uniform(x0, x1, k), rng.uniform(y0, y1, k)
    return city.to_wgs(x, y)


def _timed(fn: Callable[[], object], repeat: int) -> dict:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {"p50_ms": round(statistics.median(times), 2),
            "p95_ms": round(times[max(0, int(len(times) * 0.95) - 1)], 2),
            "max_ms": round(times[-1], 2)}


def run_bench(sensors: int, hours: float, history_sensors: int, live_minutes: int,
              repeat: int, database_url: str | None = None, quiet: bool = False,
              city: City | None = None) -> dict:
    """Run the benchmark (on ``city``, default the generated one); see the module doc."""
    console = Console(file=sys.stderr, quiet=quiet)
    if database_url:
        return _run(database_url, sensors, hours, history_sensors, live_minutes, repeat,
                    console, city)
    from citypulse.stack import PrivatePostgres

    with tempfile.TemporaryDirectory() as d, PrivatePostgres(Path(d) / "pg") as pg:
        return _run(pg.url, sensors, hours, history_sensors, live_minutes, repeat, console,
                    city)


def _run(url: str, sensors: int, hours: float, history_sensors: int, live_minutes: int,
         repeat: int, console: Console, city: City | None = None) -> dict:
    out: dict = {"sensors": sensors, "hours": hours, "history_sensors": history_sensors,
                 "live_minutes": live_minutes}
    settings = Settings(database_url=url)
    city = city or build_city()
    out["city"] = f"{city.name}@{city.version}"
    rng = np.random.default_rng(7)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    live_lo = now - timedelta(minutes=live_minutes)
    hist_lo = live_lo - timedelta(hours=hours)
    with psycopg.connect(url, autocommit=True) as conn:
        store = schema.Store.open(conn, settings)
        out["backend"] = store.backend
        conn.execute("TRUNCATE citypulse.sensors RESTART IDENTITY CASCADE")
        with console.status("registering sensors"):
            names = np.array([k for k, share in KIND_SHARES
                              for _ in range(int(round(share * sensors)))], dtype=object)[:sensors]
            rng.shuffle(names)
            lon, lat = _positions(city, names, rng)
            with conn.cursor() as cur, cur.copy(
                    "COPY citypulse.sensors (sensor_id, kind, lon, lat) FROM STDIN") as copy:
                for i, (k, x, y) in enumerate(zip(names, lon, lat, strict=True)):
                    copy.write_row((f"bench-{i:06d}", k, float(x), float(y)))
        t = time.perf_counter()
        rep = place_sensors(conn, city, settings.twin_place_tolerance_m)
        out["placement_s"] = round(time.perf_counter() - t, 3)
        out["placement"] = {k: v for k, v in rep.as_dict().items() if k != "unplaceable_sample"}

        with console.status(f"history: {history_sensors} sensors x {hours} h, rolled up"):
            t = time.perf_counter()
            conn.execute(_HISTORY, {"lo": hist_lo, "hi": live_lo, "n": history_sensors})
            store.refresh_window(conn, hist_lo, live_lo)
            conn.execute("ANALYZE")  # as after any bulk load: fresh chunks have no statistics
            out["history_write_s"] = round(time.perf_counter() - t, 2)
        with console.status("aggregating history"):
            t = time.perf_counter()
            res = aggregate(conn, hist_lo, live_lo, city)
            dt = time.perf_counter() - t
            out["history_aggregate_s"] = round(dt, 2)
            minutes = hours * 60
            out["history_sensor_minutes_per_s"] = round(history_sensors * minutes / dt)
            t = time.perf_counter()
            out["history_trips"] = rebuild_trips(conn, hist_lo, live_lo, city)
            out["history_trips_s"] = round(time.perf_counter() - t, 2)
            out["history_rows"] = {"segment": res.segment_rows, "zone": res.zone_rows,
                                   "truck": res.truck_rows}

        ids = np.arange(1, sensors + 1, dtype=np.int32)
        kinds = names
        pass_s = []
        write_s = []
        parts: list[tuple[float, float, float]] = []
        for m in range(live_minutes):
            minute = live_lo + timedelta(minutes=m)
            with console.status(f"live minute {m + 1}/{live_minutes}: {sensors} readings"):
                rows = _live_rows(minute, ids, kinds, lon, lat, rng)
                t = time.perf_counter()
                store.write_rows(conn, rows)
                write_s.append(time.perf_counter() - t)
                t = time.perf_counter()
                store.refresh_rollups(conn, settle_s=0)
                t1 = time.perf_counter()
                aggregate(conn, minute, minute + timedelta(minutes=1), city)
                t2 = time.perf_counter()
                rebuild_trips(conn, minute - timedelta(minutes=2),
                              minute + timedelta(minutes=1), city,
                              since=now - timedelta(hours=settings.twin_trip_lookback_h))
                t3 = time.perf_counter()
                pass_s.append(t3 - t)
                parts.append((t1 - t, t2 - t1, t3 - t2))
        out["live_write_s_per_minute"] = round(statistics.median(write_s), 3)
        out["aggregation_pass_s_per_minute"] = round(statistics.median(pass_s), 3)
        out["pass_breakdown_s"] = {
            name: round(statistics.median(p[i] for p in parts), 3)
            for i, name in enumerate(("store_refresh_rollups", "twin_aggregate", "twin_trips"))}
        # a minute is aggregated settle_s after it ends, plus one pass, plus up to one interval
        out["aggregation_lag_s"] = round(5.0 + statistics.median(pass_s)
                                         + settings.twin_interval_s / 2, 2)

        past = hist_lo + timedelta(hours=hours / 2)
        with console.status("timing state queries"):
            out["queries"] = {
                "segments_now": _timed(lambda: state.segments_at(conn), repeat),
                "zones_now": _timed(lambda: state.zones_at(conn), repeat),
                "od_hour": _timed(lambda: state.od(conn, past), repeat),
                "segments_at_past_T": _timed(lambda: state.segments_at(conn, past), repeat),
                "zones_at_past_T": _timed(lambda: state.zones_at(conn, past), repeat),
            }
        out["p95_under_100ms"] = all(q["p95_ms"] < 100 for q in out["queries"].values())
    return out


def _live_rows(minute: datetime, ids: np.ndarray, kinds: np.ndarray, lon: np.ndarray,
               lat: np.ndarray, rng: np.random.Generator) -> list[tuple]:
    n = len(ids)
    offs = rng.integers(0, 60_000, n)
    a = rng.uniform(0, 20, n).round()
    b = rng.uniform(15, 60, n)
    c = rng.uniform(0, 60, n)
    is_truck = kinds == "logistics"
    a = np.where(is_truck, lon, a)
    b = np.where(is_truck, lat, b)
    pad = (None,) * (MAX_SLOTS - 3)
    return [(minute + timedelta(milliseconds=int(o)), int(i), 0, float(x), float(y), float(z),
             *pad) for i, o, x, y, z in zip(ids, offs, a, b, c, strict=True)]
