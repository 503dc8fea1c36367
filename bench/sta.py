"""``citypulse bench sta``: latencies of the SensorThings API's fast paths, as JSON.

A private PostgreSQL (unless ``--database-url`` names a prepared one), ``--sensors``
traffic sensors (5 datastreams each) with ``--hours`` of readings every ``--interval-s``
written through :meth:`Store.write_rows` and rolled up, then the real dashboards app (its
``/sta/v1.1`` behind an API key) served in this process and asked, one request at a time.
With ``--pg-dir`` the private PostgreSQL lives in that directory and is kept (stopped)
after the run: a later run with the same directory measures the store filled the first
time (its fill figures are kept in ``fill.json`` there) instead of loading it again.
Queries:

- ``latest``: ``Datastreams?$top=1000&$expand=Observations($top=1;$orderby=phenomenonTime
  desc)`` (the latest observation of 1,000 datastreams), random pages (``$skip``), and
  ``latest_1000_first_page``: the same without ``$skip``;
- ``count_day``: ``$count`` of one random datastream's observations over the last full day;
- ``page_day``: the first page (``$top=100``) of one datastream's day, and ``day_array``:
  the whole day in one ``dataArray`` page;
- with ``--trackers`` (logistics trackers reporting lon/lat at the same interval):
  ``track_latest_100`` (100 trackers, each with its 10 latest HistoricalLocations and its
  current Location expanded), ``track_hour`` (one tracker's last hour, with ``$count``)
  and ``track_first_page`` (the first page of all ``/HistoricalLocations``).

p50/p95/max in ms per query, the store's size, and whether each query's plan touches
``raw`` only through indexes (EXPLAIN of the SQL the request ran).
"""

from __future__ import annotations

import io
import json
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import requests

from citypulse import apikeys, schema
from citypulse.catalogue import MAX_SLOTS
from citypulse.settings import Settings
from citypulse.stack import PrivatePostgres


def _fill(conn, settings: Settings, sensors: int, hours: float, interval_s: int,
          now: datetime, trackers: int = 0) -> dict:
    buf = io.StringIO()
    for i in range(sensors):
        buf.write(f"sta-{i:07d}\ttraffic\t{121.9 + (i % 500) * 1e-4:.6f}\t"
                  f"{30.9 + (i // 500) * 1e-4:.6f}\n")
    for i in range(trackers):
        buf.write(f"trk-{i:07d}\tlogistics\t121.9\t30.9\n")
    with conn.cursor() as cur, cur.copy(
            "COPY citypulse.sensors (sensor_id, kind, lon, lat) FROM STDIN") as cp:
        cp.write(buf.getvalue())
    ids = [r[0] for r in conn.execute("SELECT id FROM citypulse.sensors WHERE kind = "
                                      "'traffic' ORDER BY id")]
    trk = [r[0] for r in conn.execute("SELECT id FROM citypulse.sensors WHERE kind = "
                                      "'logistics' ORDER BY id")]
    store = schema.Store.open(conn, settings, migrate_now=False)
    steps = int(hours * 3600 // interval_s)
    start = now - timedelta(seconds=steps * interval_s)
    pad = (None,) * (MAX_SLOTS - 5)
    rows, t0 = 0, time.perf_counter()
    batch: list[tuple] = []
    for k in range(steps):
        t = start + timedelta(seconds=k * interval_s)
        for j, s in enumerate(ids):
            batch.append((t, s, k, float((k + j) % 40), 30.0 + (k % 50), 12.5, 90.0, -70.0)
                         + pad)
        for j, s in enumerate(trk):  # lon, lat, speed, heading, load
            batch.append((t, s, k, 121.9 + (k % 600) * 1e-4, 30.9 + j * 1e-3, 40.0, 90.0,
                          9000.0) + pad)
        if len(batch) >= 200_000:
            store.write_rows(conn, batch)
            rows += len(batch)
            batch = []
    if batch:
        store.write_rows(conn, batch)
        rows += len(batch)
    written = time.perf_counter() - t0
    store.refresh_rollups(conn, settle_s=0)
    conn.execute("ANALYZE")
    return {"sensors": len(ids), "trackers": len(trk), "datastreams": len(ids) * 5,
            "readings": rows,
            "observations": rows * 5, "first": start.isoformat(), "write_s": round(written, 1),
            "rollup_s": round(time.perf_counter() - t0 - written, 1)}


def _stats(ms: list[float]) -> dict:
    ms = sorted(ms)
    return {"n": len(ms), "p50_ms": round(statistics.median(ms), 2),
            "p95_ms": round(ms[max(0, int(len(ms) * 0.95) - 1)], 2),
            "max_ms": round(ms[-1], 2)}


def _time(session, url: str, params: dict, check) -> float:
    t0 = time.perf_counter()
    r = session.get(url, params=params, timeout=120)
    dt = (time.perf_counter() - t0) * 1000
    if r.status_code != 200:
        raise RuntimeError(f"{url} {params}: {r.status_code} {r.text[:300]}")
    check(r.json())
    return dt


def _index_only(db: str, path: str, params: dict) -> bool:
    """Whether every statement the request runs reads ``raw`` through an index."""
    from standards.sta.engine import Reader
    from standards.sta.routes import resolve

    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("SET jit = off")
        reader = Reader(conn)
        resolve(reader, path, list(params.items()), "B", "B/" + path)
        for sql, p in reader.executed:
            plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + sql, p))
            if any("Seq Scan" in ln and " on raw" in ln for ln in plan.splitlines()):
                return False
    return True


def run(sensors: int = 2000, hours: float = 24.0, interval_s: int = 60, repeat: int = 30,
        database_url: str | None = None, seed: int = 1, pg_dir: Path | None = None,
        trackers: int = 0) -> dict:
    """Fill (unless ``database_url`` or a filled ``pg_dir``), serve the app, time each query."""
    with tempfile.TemporaryDirectory(prefix="cp-bench-sta-") as tmp:
        if database_url:
            return _measure(database_url, Path(tmp), None, repeat, seed)
        home = Path(pg_dir) if pg_dir else Path(tmp)
        with PrivatePostgres(home / "pg") as pg:
            return _measure(pg.url, Path(tmp), _filled(pg.url, home, sensors, hours,
                                                       interval_s, trackers), repeat, seed)


def _filled(db: str, home: Path, sensors: int, hours: float, interval_s: int,
            trackers: int) -> dict:
    """The fill figures: of this run's fill, or of the one that filled ``home`` before."""
    done = home / "fill.json"
    if done.exists():
        return {**json.loads(done.read_text()), "reused": str(home)}
    settings = Settings(database_url=db, data_dir=home)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    with psycopg.connect(db, autocommit=True) as conn:
        schema.migrate(conn, settings)
        info = _fill(conn, settings, sensors, hours, interval_s, now, trackers)
    done.write_text(json.dumps(info))
    return info


def _measure(db: str, tmp: Path, info: dict | None, repeat: int, seed: int) -> dict:
    from dashboards.app import create_app
    from dashboards.serve import serve

    rng = random.Random(seed)
    with psycopg.connect(db, autocommit=True) as conn:
        _k, key = apikeys.create(conn, f"bench-sta-{int(time.time())}", ["api:read"],
                                 created_by="bench")
        ds_ids = [r[0] * 8 + k for r in conn.execute(
            "SELECT id FROM citypulse.sensors WHERE kind = 'traffic' ORDER BY id")
            for k in range(5)]
        last = conn.execute("SELECT max(time) FROM citypulse.raw").fetchone()[0]
        trk = [r[0] for r in conn.execute(
            "SELECT id FROM citypulse.sensors WHERE kind = 'logistics' ORDER BY id")]
    day_hi = last.replace(second=0, microsecond=0)
    day_lo = day_hi - timedelta(days=1)
    window = (f"phenomenonTime ge {day_lo:%Y-%m-%dT%H:%M:%SZ} and "
              f"phenomenonTime lt {day_hi:%Y-%m-%dT%H:%M:%SZ}")
    served = serve(create_app(Settings(database_url=db, data_dir=tmp)))
    try:
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {key}"
        base = served.url + "/sta/v1.1"
        pages = max(1, len(ds_ids) // 1000)
        latest_q = {"$top": "1000", "$select": "id,name",
                    "$expand": "Observations($top=1;$orderby=phenomenonTime desc)"}

        def latest_ok(b):
            assert len(b["value"]) == min(1000, len(ds_ids))
            assert all(len(d["Observations"]) == 1 for d in b["value"])

        out: dict = {"store": info or {"database_url": "given"}, "datastreams": len(ds_ids)}
        out["latest_1000"] = _stats([_time(s, base + "/Datastreams", dict(
            latest_q, **{"$skip": str(1000 * rng.randrange(pages))}), latest_ok)
            for _ in range(repeat)])
        out["latest_1000_first_page"] = _stats([_time(s, base + "/Datastreams", latest_q,
                                                      latest_ok) for _ in range(repeat)])
        count_q = {"$count": "true", "$top": "0", "$filter": window}
        out["count_day"] = _stats([_time(
            s, f"{base}/Datastreams({rng.choice(ds_ids)})/Observations", count_q,
            lambda b: b["@iot.count"] > 0) for _ in range(repeat)])
        page_q = {"$filter": window, "$top": "100"}
        out["page_day"] = _stats([_time(
            s, f"{base}/Datastreams({rng.choice(ds_ids)})/Observations", page_q,
            lambda b: len(b["value"]) == 100) for _ in range(repeat)])
        arr_q = {"$filter": window, "$top": "10000", "$resultFormat": "dataArray"}
        out["day_array"] = _stats([_time(
            s, f"{base}/Datastreams({rng.choice(ds_ids)})/Observations", arr_q,
            lambda b: b["value"][0]["dataArray@iot.count"] > 0) for _ in range(repeat)])
        probe = ds_ids[0]
        out["index_only"] = {
            "latest_1000": _index_only(db, "Datastreams", latest_q),
            "count_day": _index_only(db, f"Datastreams({probe})/Observations", count_q),
            "page_day": _index_only(db, f"Datastreams({probe})/Observations", page_q)}
        if trk:
            out.update(_tracks(s, base, db, trk, day_hi, repeat, rng))
        return out
    finally:
        served.stop()


def _tracks(s, base: str, db: str, trk: list[int], hi: datetime, repeat: int, rng) -> dict:
    """Trackers' tracks: latest points of 100, one tracker's hour, all tracks' first page."""
    latest_q = {"$filter": "properties/kind eq 'logistics'", "$top": "100",
                "$expand": "HistoricalLocations($top=10;$orderby=time desc),Locations"}

    def latest_ok(b):
        assert all(len(t["HistoricalLocations"]) == 10 and len(t["Locations"]) == 1
                   for t in b["value"])

    def hour_q(t: int) -> dict:
        return {"$count": "true", "$top": "100", "$filter": (
            f"time ge {hi - timedelta(hours=1):%Y-%m-%dT%H:%M:%SZ} and time lt "
            f"{hi:%Y-%m-%dT%H:%M:%SZ} and Thing/@iot.id eq {t}")}

    out = {"track_latest_100": _stats([_time(s, base + "/Things", latest_q, latest_ok)
                                       for _ in range(repeat)]),
           "track_hour": _stats([_time(s, base + "/HistoricalLocations",
                                       hour_q(rng.choice(trk)), lambda b: b["@iot.count"] > 0)
                                 for _ in range(repeat)]),
           "track_first_page": _stats([_time(s, base + "/HistoricalLocations", {},
                                             lambda b: len(b["value"]) == 100)
                                       for _ in range(repeat)])}
    out["index_only_tracks"] = {
        "track_latest_100": _index_only(db, "Things", latest_q),
        "track_hour": _index_only(db, "HistoricalLocations", hour_q(trk[0])),
        "track_first_page": _index_only(db, "HistoricalLocations", {})}
    return out
