"""``citypulse bench ingest``: a measured load through the real broker into the real database.

In: :class:`BenchSpec` (sensors, readings/s, seconds, readings per message, QoS, optional
broker/database URLs; private ones are started otherwise).  Out: a dict (printed as JSON)
with offered_per_s, stored_per_s, p50/p99 latency (sensor ts -> commit, from the
collector's lag histogram), lost (seqs sent minus distinct seqs stored), duplicates,
dead_letters and collector_rss_mb.  The collector runs as a subprocess
(``citypulse ingest``), the load generator is :mod:`device_sim.loadgen`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench import proccpu
from bench.pyspy import profiler, summarise
from citypulse import schema
from citypulse.settings import Settings
from citypulse.stack import PrivateMosquitto, PrivatePostgres, free_port
from device_sim.loadgen import LoadSpec, gateway_of, run_load
from ingest import metrics as im
from ingest import registry


@dataclass(frozen=True)
class BenchSpec:
    """Benchmark parameters."""

    sensors: int = 1000
    rate: float = 5000.0
    duration: float = 20.0
    per_message: int = 1
    qos: int = 1
    workers: int = 1
    mqtt_url: str | None = None
    database_url: str | None = None
    writer_connections: int = 2
    collectors: int = 1
    dialect: str = "native"  # thingsboard | chirpstack | ttn | http: the same load, adapted
    feeder: str = "wire"     # wire: prebuilt packets (bench.wirefeed); loadgen: device_sim.loadgen
    encoding: str = "json"   # json | msgpack (MQTT 5 content type); wire feeder only
    collector_path: str | None = None  # run the collector from this source tree (before/after)
    profile: str | None = None  # py-spy raw (collapsed) stacks of collector i to <profile>-i.txt


def scrape(port: int) -> dict[str, list]:
    """The collector's /metrics as ``name -> [(labels, value), ...]``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, list] = {}
    for s in im.samples(text):
        out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Quantile from cumulative histogram buckets ``[(le, count), ...]`` (linear in a bucket)."""
    buckets = sorted(buckets)
    total = buckets[-1][1] if buckets else 0
    if not total:
        return None
    target = q * total
    prev_le, prev_n = 0.0, 0.0
    for le, n in buckets:
        if n >= target:
            if le == float("inf"):
                return prev_le
            frac = (target - prev_n) / (n - prev_n) if n > prev_n else 1.0
            return prev_le + frac * (le - prev_le)
        prev_le, prev_n = le, n
    return prev_le


def _rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def services(spec: BenchSpec, tmpd: Path, stack: contextlib.ExitStack, say,
             ) -> tuple[str, str, PrivateMosquitto | None]:
    """The database and broker URLs: the spec's, or private servers started in ``stack``.

    The third value is the private broker (None when the spec names one).
    """
    db_url, mqtt_url, broker = spec.database_url, spec.mqtt_url, None
    if db_url is None:
        say("starting private PostgreSQL")
        db_url = stack.enter_context(PrivatePostgres(tmpd / "pg", durable=False)).url
        # autovacuum off: in a run of seconds it wakes at random (the launcher visits each new
        # database, and a freshly migrated one has dozens of tables to analyze), so one run
        # paid for it and the next did not; each run reports what ran (``autovacuum_runs``)
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET autovacuum = off")
            conn.execute("SELECT pg_reload_conf()")
    if mqtt_url is None:
        say("starting private Mosquitto")
        broker = stack.enter_context(PrivateMosquitto(tmpd / "mqtt"))
        mqtt_url = broker.url
    return db_url, mqtt_url, broker


def wait_stored(stored, target: int, stall_s: float = 5.0) -> tuple[int, float]:
    """Poll ``stored()`` until it reaches ``target`` or stops moving for ``stall_s``.

    Returns the last count and the monotonic time it last grew (or reached the target).
    """
    n = last = -1
    t_done = time.monotonic()
    settle = time.monotonic() + 120
    while time.monotonic() < settle:
        n = stored()
        if n >= target:
            return n, time.monotonic()
        if n != last:
            last, t_done = n, time.monotonic()
        elif time.monotonic() - t_done > stall_s:
            break
        # a scrape costs the collector CPU too: not too often, but finely near the end, so
        # the end time (hence stored/s) is not off by up to one poll interval
        time.sleep(0.5 if n < 0.95 * target else 0.02)
    return n, t_done


def run_bench(spec: BenchSpec, progress=None) -> dict:
    """Run the benchmark (see module docstring); ``progress(str)`` gets status lines."""
    say = progress or (lambda _m: None)
    with tempfile.TemporaryDirectory(prefix="cp-bench-") as tmp, contextlib.ExitStack() as stack:
        tmpd = Path(tmp)
        db_url, mqtt_url, _ = services(spec, tmpd, stack, say)
        prefix = "bench" + uuid.uuid4().hex[:6]
        settings = Settings(database_url=db_url, mqtt_url=mqtt_url, topic_prefix=prefix)
        ids = [f"{prefix}-s{i:06d}" for i in range(spec.sensors)]
        with psycopg.connect(db_url, autocommit=True) as conn:
            schema.Store.open(conn, settings)
            say(f"registering {spec.sensors} sensors")
            registry.upsert(conn, [
                registry.SensorRecord(sid, "traffic", 121.93, 30.9,
                                      gateway_of(i, spec.per_message), "{}")
                for i, sid in enumerate(ids)])
        if spec.dialect == "http":
            from bench.ingest_http import bench_http

            return bench_http(spec, db_url, prefix, ids, tmpd, say)
        env = dict(os.environ, CITYPULSE_DATABASE_URL=db_url, CITYPULSE_MQTT_URL=mqtt_url,
                   CITYPULSE_TOPIC_PREFIX=prefix, CITYPULSE_DEVICE_RATE_LIMIT="1000000",
                   CITYPULSE_SPOOL_DIR=str(tmpd / "spool"),
                   CITYPULSE_WRITER_CONNECTIONS=str(spec.writer_connections),
                   CITYPULSE_SOURCES="" if spec.dialect == "native" else spec.dialect)
        log = open(tmpd / "collector.log", "wb")
        ports = [free_port() for _ in range(spec.collectors)]
        share = ["--share", prefix] if spec.collectors > 1 else []
        procs = [subprocess.Popen([sys.executable, "-m", "citypulse", "ingest", "--metrics-port",
                                   str(port), "--client-id", f"{prefix}-collector{i}", *share],
                                  env=env, stdout=log, stderr=subprocess.STDOUT,
                                  cwd=spec.collector_path)
                 for i, port in enumerate(ports)]

        def total(metrics: list[dict], name: str) -> float:
            return sum(v for m in metrics for _, v in m.get(name, []))

        try:
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(OSError):
                    if total([scrape(p) for p in ports],
                             im.CONNECTED) == len(ports):
                        break
                if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                    raise RuntimeError("collector did not start; log:\n"
                                       + (tmpd / "collector.log").read_text()[-3000:])
                time.sleep(0.2)
            time.sleep(0.5)  # subscriptions settle
            rss0 = sum(_rss_mb(p.pid) for p in procs)
            say(f"sending {spec.rate:g} readings/s for {spec.duration:g}s "
                f"({spec.per_message}/message, {spec.collectors} collector(s))")
            ep = settings.mqtt
            meter = CpuMeter(ep.port, db_port(db_url), {"collector": [p.pid for p in procs]})
            spies = [profiler(p.pid, f"{spec.profile}-{i}.txt")
                     for i, p in enumerate(procs)] if spec.profile else []
            load = send(spec, ep.host, ep.port, prefix, ids, tmpd, meter.start)
            t0 = meter.started
            say(f"sent {load.readings} readings in {load.messages} messages; waiting for commits")
            stored, t_done = wait_stored(
                lambda: int(total([scrape(p) for p in ports], im.total(im.STORED))),
                load.readings)
            cpu = meter.stop(load, stored)
            for spy in spies:
                spy.send_signal(signal.SIGINT)
                spy.wait(30)
            rss = sum(_rss_mb(p.pid) for p in procs)
            ms = [scrape(p) for p in ports]
        finally:
            proccpu.stop(procs)
            log.close()
        les: dict[float, float] = {}
        for m in ms:
            for lbl, v in m.get(im.LAG_SECONDS + "_bucket", []):
                les[float(lbl["le"])] = les.get(float(lbl["le"]), 0.0) + v
        lag = list(les.items())
        with psycopg.connect(db_url, autocommit=True) as conn:
            rows, distinct = conn.execute(
                "SELECT count(*), count(DISTINCT (r.sensor, r.seq)) FROM citypulse.raw r "
                "JOIN citypulse.sensors s ON s.id = r.sensor WHERE s.sensor_id LIKE %s",
                (prefix + "-%",)).fetchone()
            dead = conn.execute("SELECT count(*) FROM citypulse.dead_letters WHERE topic LIKE %s "
                                "OR sensor_id LIKE %s", (prefix + "/%", prefix + "-%")).fetchone()[0]
        elapsed = max(1e-6, t_done - t0)
        p50, p99 = quantile(lag, 0.5), quantile(lag, 0.99)
        return {
            "dialect": spec.dialect,
            "sensors": spec.sensors, "per_message": spec.per_message, "qos": spec.qos,
            "duration_s": round(load.seconds, 2),
            "sent": load.readings, "messages": load.messages,
            "offered_per_s": round(load.readings / max(1e-6, load.seconds), 1),
            "stored": rows,
            "stored_per_s": round(rows / elapsed, 1),
            "p50_latency_ms": None if p50 is None else round(p50 * 1000, 1),
            "p99_latency_ms": None if p99 is None else round(p99 * 1000, 1),
            "lost": load.readings - distinct,
            "duplicates": rows - distinct,
            "dead_letters": dead,
            "internal_errors": int(total(ms, im.total(im.INTERNAL_ERRORS))),
            "mean_batch_rows": round(total(ms, im.BATCH_ROWS + "_sum")
                                     / max(1.0, total(ms, im.BATCH_ROWS + "_count"))),
            "receive_max_exceeded": int(total(ms, im.total(im.RECEIVE_MAX_EXCEEDED))),
            "collectors": spec.collectors,
            "collector_rss_mb": round(rss, 1), "collector_rss_start_mb": round(rss0, 1),
            "encoding": spec.encoding, "feeder": spec.feeder, "cpu_us_per_reading": cpu,
            **({"profile": [summarise(f"{spec.profile}-{i}.txt") for i in range(len(procs))]}
               if spec.profile else {}),
        }


def db_port(url: str) -> int:
    """The TCP port of a database URL (5432 when absent)."""
    from urllib.parse import urlsplit

    return urlsplit(url).port or 5432


class CpuMeter:
    """CPU seconds of broker, database (all its processes) and named pids over a run."""

    def __init__(self, broker_port: int, db_port: int, pids: dict[str, list[int]]) -> None:
        self.broker = proccpu.listener_pid(broker_port)
        self.db = proccpu.listener_pid(db_port)
        self.pids = pids
        self.t0: dict[str, float] = {}
        self.started = 0.0

    def _now(self) -> dict[str, float]:
        out = {name: sum(proccpu.cpu(p) for p in pids) for name, pids in self.pids.items()}
        if self.broker:
            out["broker"] = proccpu.cpu(self.broker)
        if self.db:
            out["database"] = proccpu.tree_cpu(self.db)
        return out

    def start(self) -> None:
        """Snapshot now (called just before the load starts)."""
        self.t0 = self._now()
        self.started = time.monotonic()

    def stop(self, load: LoadResult, stored: int) -> dict[str, float | None]:
        """Microseconds of CPU per stored reading, per component (generator from the feeder)."""
        now = self._now()
        n = max(1, stored)
        out: dict[str, float | None] = {"generator": None if load.cpu_s is None
                                        else round(load.cpu_s * 1e6 / n, 2)}
        for k in ("broker", *self.pids, "database"):
            out[k] = round((now[k] - self.t0[k]) * 1e6 / n, 2) if k in now else None
        return out


def send(spec: BenchSpec, host: str, port: int, prefix: str, ids: list[str], tmpd: Path,
         on_start) -> LoadResult:
    """Send the load (the wire feeder, or the paho load generator); ``on_start()`` first."""
    if spec.feeder == "loadgen" or spec.dialect != "native":
        c0 = proccpu.cpu(os.getpid())
        on_start()
        load = run_load(LoadSpec(host, port, prefix, tuple(ids), spec.rate, spec.duration,
                                 spec.per_message, spec.qos, spec.workers, dialect=spec.dialect))
        return LoadResult(load.readings, load.messages, load.seconds,
                          proccpu.cpu(os.getpid()) - c0)
    path = tmpd / f"feed-{prefix}.json"
    path.write_text(json.dumps({
        "host": host, "port": port, "prefix": prefix, "sensor_ids": ids, "rate": spec.rate,
        "duration": spec.duration, "per_message": spec.per_message, "encoding": spec.encoding,
        "qos": spec.qos, "readings": int(spec.rate * spec.duration) if spec.rate else 0}))
    p = subprocess.Popen([sys.executable, "-m", "bench.wirefeed", str(path)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"wire feeder did not start: {line!r}")
        on_start()
        p.stdin.write("go\n")
        p.stdin.flush()
        doc = json.loads(p.stdout.readline())
    finally:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
    return LoadResult(doc["readings"], doc["messages"], doc["seconds"], doc["cpu_s"])


@dataclass(frozen=True)
class LoadResult:
    """What a feeder sent and the CPU it used while sending."""

    readings: int
    messages: int
    seconds: float
    cpu_s: float | None


def main_json(spec: BenchSpec) -> str:
    """Run and return the JSON text."""
    return json.dumps(run_bench(spec))
