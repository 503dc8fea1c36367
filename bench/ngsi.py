"""``citypulse bench ngsi``: latency of the NGSI-LD API (``/ngsi-ld/v1/``) on a seeded city.

In: sensors to seed, minutes of history (readings every ``step_min``), timed requests per
case.  Out: a JSON-ready dict with p50/p95/max milliseconds per case, measured through HTTP
against the web app (the same Flask app ``citypulse dashboard`` serves, here on a threaded
server in-process) on a private PostgreSQL seeded by :func:`bench.seed.seed` (its twin
pass included).  With ``pg_dir`` that PostgreSQL lives there and is kept (stopped): a later
run with the same directory measures the city seeded the first time (``seed.json``).

- ``segments_and_zones``: ``GET /entities?type=TrafficFlowObserved,CrowdFlowObserved``,
  every segment and zone in one page (normalized), the figure issue 17 asks for;
- ``segments_and_zones_keyvalues``: the same, ``options=keyValues``;
- ``segments`` / ``zones``: every ``TrafficFlowObserved`` / ``CrowdFlowObserved`` alone;
- ``devices_page``: one page of 1,000 ``Device`` entities (``count=true``);
- ``devices_near``: ``Device`` within 500 m of a point;
- ``temporal_zones_hour`` / ``temporal_segments_hour``: ``/temporal/entities`` for every
  zone / segment over the last hour (every attribute);
- ``temporal_zones_day`` / ``temporal_segments_day``: every zone's ``peopleCount`` / every
  segment's ``averageVehicleSpeed`` over the last 24 h.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import requests

from citypulse import schema
from citypulse.settings import Settings
from citypulse.stack import PrivatePostgres

API = "/ngsi-ld/v1"


def _cases(lon: float, lat: float, last: datetime) -> dict[str, tuple[str, dict]]:
    both = "TrafficFlowObserved,CrowdFlowObserved"
    now = last.isoformat()
    hour_ago, day_ago = ((last - d).isoformat() for d in (timedelta(hours=1), timedelta(days=1)))

    def temporal(kind: str, since: str, **more) -> tuple[str, dict]:
        return ("/temporal/entities", {"type": kind, "timerel": "between", "timeAt": since,
                                       "endTimeAt": now, "limit": 1000, **more})

    return {
        "segments_and_zones": ("/entities", {"type": both, "limit": 1000}),
        "segments_and_zones_keyvalues": ("/entities", {"type": both, "limit": 1000,
                                                       "options": "keyValues"}),
        "segments": ("/entities", {"type": "TrafficFlowObserved", "limit": 1000}),
        "zones": ("/entities", {"type": "CrowdFlowObserved", "limit": 1000}),
        "devices_page": ("/entities", {"type": "Device", "limit": 1000, "count": "true"}),
        "devices_near": ("/entities", {"type": "Device", "limit": 1000,
                                       "georel": "near;maxDistance==500", "geometry": "Point",
                                       "coordinates": f"[{lon},{lat}]"}),
        "temporal_zones_hour": temporal("CrowdFlowObserved", hour_ago),
        "temporal_segments_hour": temporal("TrafficFlowObserved", hour_ago),
        "temporal_zones_day": temporal("CrowdFlowObserved", day_ago, attrs="peopleCount"),
        "temporal_segments_day": temporal("TrafficFlowObserved", day_ago,
                                          attrs="averageVehicleSpeed"),
    }


def _ms(xs: list[float]) -> dict:
    xs = sorted(xs)
    return {"p50_ms": round(1000 * statistics.median(xs), 1),
            "p95_ms": round(1000 * xs[int(0.95 * (len(xs) - 1))], 1),
            "max_ms": round(1000 * xs[-1], 1)}


def _seeded(conn, settings: Settings, home: Path, sensors: int, minutes: int,
            step_min: int) -> dict:
    """The seed's summary: of this run's seed, or of the one that seeded ``home`` before."""
    from bench.seed import seed

    done = home / "seed.json"
    if done.exists():
        summary = json.loads(done.read_text())
        return {**summary, "last": datetime.fromisoformat(summary["last"]), "reused": str(home)}
    schema.migrate(conn, settings)
    t0 = time.perf_counter()
    summary = seed(conn, settings, sensors=sensors, minutes=minutes, alerts=4,
                   step_min=step_min)
    summary = {**summary, "sensors_asked": sensors, "minutes": minutes, "step_min": step_min,
               "seed_s": round(time.perf_counter() - t0, 1)}
    done.write_text(json.dumps(summary, default=lambda t: t.isoformat()))
    return summary


def run(sensors: int = 20_000, minutes: int = 30, repeat: int = 30, step_min: int = 1,
        pg_dir: Path | None = None) -> dict:
    """Seed (unless ``pg_dir`` holds a seeded city), serve, time each case; the figures.

    Each case is asked ``repeat`` times after one warm-up request.
    """
    with tempfile.TemporaryDirectory(prefix="cp-bench-ngsi-") as tmp:
        home = Path(pg_dir) if pg_dir else Path(tmp)
        with PrivatePostgres(home / "pg") as pg:
            settings = Settings(database_url=pg.url, data_dir=Path(tmp),
                                dashboard_secret="bench-secret-0123456789")
            with psycopg.connect(pg.url, autocommit=True) as conn:
                summary = _seeded(conn, settings, home, sensors, minutes, step_min)
                lon, lat = conn.execute("SELECT lon, lat FROM citypulse.sensors "
                                        "ORDER BY sensor_id OFFSET %s LIMIT 1",
                                        (summary["sensors"] // 3,)).fetchone()
                n_seg, = conn.execute("SELECT count(*) FROM citypulse.twin_segments").fetchone()
                n_zone, = conn.execute("SELECT count(*) FROM citypulse.twin_zones").fetchone()
            result: dict = {"seed": {k: v.isoformat() if isinstance(v, datetime) else v
                                     for k, v in summary.items() if k != "twin"},
                            "repeat": repeat, "n_segments": n_seg, "n_zones": n_zone}
            return result | _timed(settings, _cases(lon, lat, summary["last"]), repeat)


def _timed(settings: Settings, cases: dict[str, tuple[str, dict]], repeat: int) -> dict:
    import citypulse.catalogue  # noqa: F401 - the catalogue before the app (import order)
    from dashboards.app import create_app
    from dashboards.serve import serve

    served = serve(create_app(settings))
    try:
        s = requests.Session()
        s.trust_env = False
        s.post(served.url + "/login", data={"username": "viewer", "password": "viewer"},
               headers={"Origin": served.url}, timeout=60)
        result: dict = {}
        for name, (path, params) in cases.items():
            lat_s: list[float] = []
            entities = 0
            for i in range(repeat + 1):
                t0 = time.perf_counter()
                r = s.get(served.url + API + path, params=params, timeout=120)
                dt = time.perf_counter() - t0
                if r.status_code != 200:
                    raise RuntimeError(f"{name}: {r.status_code} {r.text[:200]}")
                entities = len(r.json())
                if i:  # the first is the warm-up
                    lat_s.append(dt)
            result[name] = {"entities": entities, **_ms(lat_s)}
        return result
    finally:
        served.stop()
