"""``citypulse bench ngsi``: latency of the NGSI-LD API (``/ngsi-ld/v1/``) on a seeded city.

In: sensors to seed, minutes of history, timed requests per case.  Out: a JSON-ready dict
with p50/p95/max milliseconds per case, measured through HTTP against the web app (the
same Flask app ``citypulse dashboard`` serves, here on a threaded server in-process) on a
private PostgreSQL seeded by :func:`bench.seed.seed`:

- ``segments_and_zones``: ``GET /entities?type=TrafficFlowObserved,CrowdFlowObserved``,
  every segment and zone in one page (normalized), the figure issue 17 asks for;
- ``segments_and_zones_keyvalues``: the same, ``options=keyValues``;
- ``devices_page``: one page of 1,000 ``Device`` entities (``count=true``);
- ``devices_near``: ``Device`` within 500 m of a point;
- ``temporal_zones_hour``: ``/temporal/entities`` for every zone over the last hour.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import psycopg
import requests

from citypulse import schema
from citypulse.settings import Settings
from citypulse.stack import PrivatePostgres

API = "/ngsi-ld/v1"


def _cases(lon: float, lat: float, now: str, hour_ago: str) -> dict[str, tuple[str, dict]]:
    both = "TrafficFlowObserved,CrowdFlowObserved"
    return {
        "segments_and_zones": ("/entities", {"type": both, "limit": 1000}),
        "segments_and_zones_keyvalues": ("/entities", {"type": both, "limit": 1000,
                                                       "options": "keyValues"}),
        "devices_page": ("/entities", {"type": "Device", "limit": 1000, "count": "true"}),
        "devices_near": ("/entities", {"type": "Device", "limit": 1000,
                                       "georel": "near;maxDistance==500", "geometry": "Point",
                                       "coordinates": f"[{lon},{lat}]"}),
        "temporal_zones_hour": ("/temporal/entities", {
            "type": "CrowdFlowObserved", "timerel": "between", "timeAt": hour_ago,
            "endTimeAt": now, "limit": 1000}),
    }


def _ms(xs: list[float]) -> dict:
    xs = sorted(xs)
    return {"p50_ms": round(1000 * statistics.median(xs), 1),
            "p95_ms": round(1000 * xs[int(0.95 * (len(xs) - 1))], 1),
            "max_ms": round(1000 * xs[-1], 1)}


def run(sensors: int = 20_000, minutes: int = 30, repeat: int = 30) -> dict:
    """Seed, serve, time each case ``repeat`` times after one warm-up; return the figures."""
    import citypulse.catalogue  # noqa: F401 - the catalogue before the app (import order)
    from bench.seed import seed
    from dashboards.app import create_app
    from dashboards.serve import serve

    with tempfile.TemporaryDirectory(prefix="cp-bench-ngsi-") as tmp, \
            PrivatePostgres(Path(tmp) / "pg") as pg:
        settings = Settings(database_url=pg.url, data_dir=Path(tmp),
                            dashboard_secret="bench-secret-0123456789")
        with psycopg.connect(pg.url, autocommit=True) as conn:
            schema.migrate(conn, settings)
            summary = seed(conn, settings, sensors=sensors, minutes=minutes, alerts=4)
            lon, lat = conn.execute("SELECT lon, lat FROM citypulse.sensors "
                                    "ORDER BY sensor_id OFFSET %s LIMIT 1",
                                    (sensors // 3,)).fetchone()
            n_seg, = conn.execute("SELECT count(*) FROM citypulse.twin_segments").fetchone()
            n_zone, = conn.execute("SELECT count(*) FROM citypulse.twin_zones").fetchone()
        served = serve(create_app(settings))
        try:
            s = requests.Session()
            s.trust_env = False
            s.post(served.url + "/login", data={"username": "viewer", "password": "viewer"},
                   headers={"Origin": served.url}, timeout=60)
            last = summary["last"]
            now, hour_ago = last.isoformat(), (last - timedelta(hours=1)).isoformat()
            result: dict = {"sensors": sensors, "minutes": minutes, "repeat": repeat,
                            "segments": n_seg, "zones": n_zone}
            for name, (path, params) in _cases(lon, lat, now, hour_ago).items():
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
