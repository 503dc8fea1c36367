"""``citypulse bench web``: requests per second through the production server (gunicorn).

In: sensors to seed, seconds, concurrent clients, TLS on/off, workers x threads.  Out: a
JSON-ready dict per endpoint (``/api/state``, ``/api/twin/zones``, ``/login`` page):
requests, errors, requests/s, p50/p95 latency ms, for ``citypulse dashboard`` started as
its own process on a private PostgreSQL seeded with :func:`bench.seed.seed`.  The load
generator shares the machine's cores with the server and the database.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import requests

from bench.proccpu import stop
from citypulse import schema
from citypulse.settings import Settings
from citypulse.stack import PrivatePostgres, free_port, wait_port

PATHS = ("/api/state", "/api/twin/zones", "/login")


def _hammer(session: requests.Session, url: str, until: float, out: list, errors: list):
    while time.perf_counter() < until:
        t0 = time.perf_counter()
        try:
            ok = session.get(url, timeout=30).status_code == 200
        except requests.RequestException:
            ok = False
        (out if ok else errors).append(time.perf_counter() - t0)


def run(sensors: int = 2000, seconds: float = 10.0, clients: int = 8, tls: bool = False,
        workers: int = 2, threads: int = 8) -> dict:
    """Seed a private database, start the server process, measure each endpoint in turn."""
    from bench.seed import seed

    with tempfile.TemporaryDirectory(prefix="cp-bench-web-") as tmp, \
            PrivatePostgres(Path(tmp) / "pg") as pg:
        settings = Settings(database_url=pg.url, data_dir=Path(tmp))
        with psycopg.connect(pg.url, autocommit=True) as conn:
            schema.migrate(conn, settings)
            seed(conn, settings, sensors=sensors, minutes=10, alerts=3)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CITYPULSE_")}
        env.update(CITYPULSE_DATABASE_URL=pg.url, CITYPULSE_WEB_WORKERS=str(workers),
                   CITYPULSE_WEB_THREADS=str(threads), CITYPULSE_WEB_ACCESS_LOG="false",
                   CITYPULSE_DATA_DIR=tmp)
        verify: str | bool = False
        if tls:
            from ingest.credentials import make_self_signed

            paths = make_self_signed(Path(tmp) / "tls", ["localhost", "127.0.0.1"])
            env.update(CITYPULSE_WEB_TLS_CERT=str(paths["cert"]),
                       CITYPULSE_WEB_TLS_KEY=str(paths["key"]))
            verify = str(paths["ca"])
        base = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        proc = subprocess.Popen([sys.executable, "-m", "citypulse", "dashboard", "--port",
                                 str(port)], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            wait_port(port, timeout=120)
            sessions = []
            for _ in range(clients):
                s = requests.Session()
                s.trust_env, s.verify = False, verify
                s.headers["Origin"] = base
                s.post(base + "/login", data={"username": "viewer", "password": "viewer"},
                       timeout=60)
                s.get(base + PATHS[0], timeout=60)  # warm the worker
                sessions.append(s)
            result = {"sensors": sensors, "clients": clients, "tls": tls,
                      "workers": workers, "threads": threads, "seconds": seconds}
            for path in PATHS:
                lat: list[float] = []
                errors: list[float] = []
                until = time.perf_counter() + seconds
                ts = [threading.Thread(target=_hammer, args=(s, base + path, until, lat, errors))
                      for s in sessions]
                for t in ts:
                    t.start()
                for t in ts:
                    t.join()
                lat.sort()
                result[path] = {
                    "requests": len(lat), "errors": len(errors),
                    "per_s": round(len(lat) / seconds, 1),
                    "p50_ms": round(1000 * statistics.median(lat), 1) if lat else None,
                    "p95_ms": round(1000 * lat[int(0.95 * (len(lat) - 1))], 1) if lat else None,
                }
            return result
        finally:
            stop([proc], 60)
