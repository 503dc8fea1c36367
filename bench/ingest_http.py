"""``citypulse bench ingest --dialect http``: the same load POSTed to ``/api/v1/ingest``.

In: the benchmark's spec, a migrated database with the sensors registered, the sensor ids
and a scratch directory.  Out: the same figures as the MQTT dialects (see
:mod:`bench.ingest`), measured through the production web server (``citypulse dashboard``,
gunicorn) with HTTP push enabled and an API key of scope ``ingest:http``: bodies in the
gateway shape (``per_message`` readings each), sent by ``spec.workers`` x 8 client threads
on keep-alive connections, paced to ``spec.rate``.  A 202 comes only after the commit, so
the latency percentiles are request -> committed.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import psycopg
import requests

from bench.proccpu import stop
from citypulse import apikeys
from citypulse.stack import ServiceError, free_port, wait_port
from device_sim.dialects import HTTP_TOPIC
from device_sim.loadgen import LoadResult, gateway_doc


def start_web(db_url: str, tmpd: Path, threads: int = 8) -> tuple[subprocess.Popen, str]:
    """The dashboards (with HTTP push on) in a subprocess; (process, base URL)."""
    port = free_port()
    env = dict(os.environ, CITYPULSE_DATABASE_URL=db_url, CITYPULSE_SOURCES="http",
               CITYPULSE_DASHBOARD_HOST="127.0.0.1", CITYPULSE_DASHBOARD_PORT=str(port),
               CITYPULSE_WEB_WORKERS="1", CITYPULSE_WEB_THREADS=str(threads),
               CITYPULSE_DATA_DIR=str(tmpd / "web"))
    log = open(tmpd / "web.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "citypulse", "dashboard"], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port, 90)
    except ServiceError:
        proc.kill()
        raise RuntimeError("dashboards did not start; log:\n"
                           + (tmpd / "web.log").read_text()[-3000:]) from None
    return proc, f"http://127.0.0.1:{port}"


def run_http_load(base: str, key: str, ids: list[str], rate: float, duration: float,
                  per_message: int, threads: int) -> tuple[LoadResult, list[float], int]:
    """POST the load; (what was acknowledged, request latencies in s, failed requests)."""
    k = max(1, per_message)
    chunks = [ids[i:i + k] for i in range(0, len(ids), k)]
    url = base + "/api/v1/ingest"
    lock = threading.Lock()
    state = {"next": 0, "readings": 0, "messages": 0, "failed": 0}
    seq = dict.fromkeys(ids, 0)
    last_ts = dict.fromkeys(ids, 0)
    latencies: list[float] = []
    msg_rate = rate / k
    t0 = time.monotonic()
    end = t0 + duration

    def body() -> tuple[bytes, int] | None:
        with lock:
            now = time.monotonic()
            if now >= end:
                return None
            n = state["next"]
            due = t0 + n / msg_rate
            state["next"] = n + 1
            chunk = chunks[n % len(chunks)]
            doc = gateway_doc(chunk, int(time.time() * 1000), seq, last_ts)
        if due > now:
            time.sleep(due - now)
        return orjson.dumps(doc), len(chunk)

    def client() -> None:
        s = requests.Session()
        s.headers.update({"Authorization": f"Bearer {key}",
                          "Content-Type": "application/json"})
        while (item := body()) is not None:
            payload, n = item
            t = time.monotonic()
            try:
                ok = s.post(url, data=payload, timeout=60).status_code == 202
            except requests.RequestException:
                ok = False
            dt = time.monotonic() - t
            with lock:
                latencies.append(dt)
                if ok:
                    state["readings"] += n
                    state["messages"] += 1
                else:
                    state["failed"] += 1

    pool = [threading.Thread(target=client, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    seconds = time.monotonic() - t0
    sent = {sid: n for sid, n in seq.items() if n}
    return (LoadResult(state["readings"], state["messages"], state["messages"], seconds, sent),
            latencies, state["failed"])


def bench_http(spec, db_url: str, prefix: str, ids: list[str], tmpd: Path, say) -> dict:
    """Run the HTTP push load (``spec`` is a :class:`bench.ingest.BenchSpec`); the figures."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        key = apikeys.create(conn, prefix + "-push", ["ingest:http"], "bench")[1]
    say("starting the dashboards (HTTP push)")
    proc, base = start_web(db_url, tmpd)
    try:
        say(f"posting {spec.rate:g} readings/s for {spec.duration:g}s "
            f"({spec.per_message}/request)")
        load, lat, failed = run_http_load(base, key, ids, spec.rate, spec.duration,
                                          spec.per_message, 8 * max(1, spec.workers))
        rss = _rss_mb(proc.pid)
    finally:
        stop([proc])
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT (r.sensor, r.seq)) FROM citypulse.raw r "
            "JOIN citypulse.sensors s ON s.id = r.sensor WHERE s.sensor_id LIKE %s",
            (prefix + "-%",)).fetchone()
        dead = conn.execute("SELECT count(*) FROM citypulse.dead_letters WHERE topic LIKE %s",
                            (HTTP_TOPIC + "/%",)).fetchone()[0]
    lat.sort()

    def pct(q: float) -> float | None:
        return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 1) if lat else None

    return {
        "dialect": "http", "sensors": spec.sensors, "per_message": spec.per_message,
        "qos": None, "duration_s": round(load.seconds, 2),
        "sent": load.readings, "messages": load.messages, "failed_requests": failed,
        "offered_per_s": round(load.readings / max(1e-6, load.seconds), 1),
        "stored": rows, "stored_per_s": round(rows / max(1e-6, load.seconds), 1),
        "p50_latency_ms": pct(0.5), "p99_latency_ms": pct(0.99),
        "lost": load.readings - distinct, "duplicates": rows - distinct,
        "dead_letters": dead, "internal_errors": 0, "collectors": 0,
        "web_rss_mb": round(rss, 1),
    }


def _rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its children (gunicorn's worker)."""
    total = 0.0
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    for p in pids:
        with contextlib.suppress(OSError), open(f"/proc/{p}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
    return total
