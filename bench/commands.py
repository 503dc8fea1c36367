"""``citypulse bench commands``: command latency and fleet fan-out, on private services.

In: how many single commands to time, the fleet size, and how many simulated sensors report
meanwhile (through a real collector into the same database).  Out: a JSON-ready dict with
the latency from request to ``succeeded`` (p50/p95/max, ms, database timestamps) for single
commands sent one after another, and the time for one fleet command to reach every
actuator (all ``sent``) and to see all of them ``succeeded``.  The simulated actuators answer
after ``delay_s`` (reported), so latency = citypulse's overhead + that delay.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psycopg

from citypulse import schema
from citypulse.catalogue import MAX_SLOTS, device_kind
from citypulse.settings import Settings
from citypulse.stack import PrivateMosquitto, PrivatePostgres
from control import api

DELAY_S = (0.05, 0.1)
OP = {"by": "bench", "role": "operator"}


def _register_pumps(conn: psycopg.Connection, store: schema.Store, ids: list[str],
                    zone: str) -> None:
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO citypulse.sensors (sensor_id, kind, lon, lat, props) "
                        "VALUES (%s, 'pump', 121.93, 30.9, %s)",
                        [(i, f'{{"zone_id": "{zone}"}}') for i in ids])
    rows = conn.execute("SELECT id FROM citypulse.sensors WHERE sensor_id = ANY(%s)",
                        (ids,)).fetchall()
    slot = device_kind("pump").slot_of["sump_level_m"]
    now = datetime.now(UTC)
    vals = [None] * MAX_SLOTS
    vals[slot] = 2.0
    store.write_rows(conn, [(now, r[0], None, *vals) for r in rows])


def _sensors(settings: Settings, n: int, tmp: Path) -> list[subprocess.Popen]:
    """A registry of ``n`` simulated sensors, a collector and the simulator publishing."""
    from device_sim.deploy import deploy, write

    path = tmp / "deployment.parquet"
    write(deploy(n, seed=1), path)
    env = {**os.environ, "CITYPULSE_DATABASE_URL": settings.database_url,
           "CITYPULSE_MQTT_URL": settings.mqtt_url, "CITYPULSE_TOPIC_PREFIX": settings.topic_prefix,
           "CITYPULSE_SPOOL_DIR": str(tmp / "spool")}
    subprocess.run([sys.executable, "-m", "citypulse", "registry", "load", str(path)],
                   env=env, check=True, capture_output=True)
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    return [subprocess.Popen([sys.executable, "-m", "citypulse", "ingest"], **quiet),
            subprocess.Popen([sys.executable, "-m", "citypulse", "sim", "run", "--deployment",
                              str(path), "--duration", "3600"], **quiet)]


def _wait(fn, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fn():
            return True
        time.sleep(0.01)
    return False


def run(singles: int = 50, fleet: int = 1000, sensors: int = 2000) -> dict:
    """Run the benchmark on private PostgreSQL and Mosquitto; see the module doc."""
    from control.worker import Worker
    from device_sim.actuators import ActuatorSim

    with tempfile.TemporaryDirectory(prefix="cp-bench-cmd-") as d:
        tmp = Path(d)
        with PrivatePostgres(tmp / "pg") as pg, PrivateMosquitto(tmp / "mq") as mq:
            settings = Settings(database_url=pg.url, mqtt_url=mq.url, topic_prefix="bench",
                                commands_fleet_rate=1_000_000.0, data_dir=tmp)
            conn = psycopg.connect(pg.url, autocommit=True)
            store = schema.Store.open(conn, settings)
            procs = _sensors(settings, sensors, tmp) if sensors else []
            single_ids = ["pmp-single"]
            fleet_ids = [f"pmp-f{i:05d}" for i in range(fleet)]
            _register_pumps(conn, store, single_ids, "bench-single")
            _register_pumps(conn, store, fleet_ids, "bench-fleet")
            sim = ActuatorSim(mq.url, settings.topic_prefix,
                              [(i, "pump") for i in single_ids + fleet_ids],
                              delay_s=DELAY_S, telemetry=False)
            sim.session.wait_connected(30)
            w = Worker(settings)
            stop = threading.Event()
            t = threading.Thread(target=w.run, args=(stop,), daemon=True)
            t.start()
            try:
                lat = []
                for i in range(singles):
                    rec = api.request(conn, settings, "pmp-single",
                                      "start" if i % 2 == 0 else "stop", **OP)
                    _wait(lambda rid=rec["id"]: conn.execute(
                        "SELECT status IN ('succeeded', 'failed') FROM citypulse.commands "
                        "WHERE id = %s", (rid,)).fetchone()[0], 30)
                    ms = conn.execute(
                        "SELECT extract(epoch FROM finished_at - created_at) * 1000, status "
                        "FROM citypulse.commands WHERE id = %s", (rec["id"],)).fetchone()
                    if ms[1] == "succeeded":
                        lat.append(float(ms[0]))
                t0 = time.perf_counter()
                out = api.fleet(conn, settings, "pump", "start", {"zone": "bench-fleet"}, **OP)
                requested = time.perf_counter() - t0

                def count(states: str) -> int:
                    return conn.execute(
                        f"SELECT count(*) FROM citypulse.commands WHERE fleet_id = %s "  # noqa: S608
                        f"AND status IN ({states})", (out["fleet_id"],)).fetchone()[0]

                _wait(lambda: count("'sent', 'delivered', 'succeeded'") == fleet, 300)
                all_sent = time.perf_counter() - t0
                _wait(lambda: count("'succeeded'") == fleet, 300)
                all_ok = time.perf_counter() - t0
                readings = conn.execute("SELECT count(*) FROM citypulse.raw").fetchone()[0]
            finally:
                stop.set()
                t.join(10)
                sim.close()
                for p in procs:
                    p.terminate()
                    p.wait(30)
                conn.close()
    arr = np.array(lat) if lat else np.array([np.nan])
    return {"singles": singles, "succeeded": len(lat),
            "latency_ms": {"p50": round(float(np.percentile(arr, 50)), 1),
                           "p95": round(float(np.percentile(arr, 95)), 1),
                           "max": round(float(arr.max()), 1)},
            "device_delay_s": list(DELAY_S),
            "fleet": {"devices": fleet, "persisted_s": round(requested, 3),
                      "all_sent_s": round(all_sent, 3), "all_succeeded_s": round(all_ok, 3),
                      "succeeded": sum(sim.executions().values()) - len(lat)},
            "sensors_reporting": sensors, "readings_stored_meanwhile": readings}
