"""``citypulse bench commands``: command latency and fleet fan-out while the city reports.

In: how many single commands to time, the fleet size, and the sensor load meanwhile: how many
sensors report (registered, sent by :mod:`device_sim.loadgen` as gateway batches of
``per_message`` readings through a real collector into the same database) at how many
readings per second.  Everything runs on private PostgreSQL and Mosquitto, the collector and
the commands worker (``citypulse commands run``) as their own processes, as in production.
Out: a JSON-ready dict with the latency from request to ``succeeded`` (p50/p95/max, ms,
database timestamps) for single commands sent one after another, the time for one fleet
command to reach every actuator (all ``sent``) and to see all of them ``succeeded``, and
what the sensor load actually was while commands ran (readings committed per second, the
collector's lag), next to what was offered.  The simulated actuators answer after
``delay_s`` (reported), so latency = citypulse's overhead + that delay.  With
``via="thingsboard"`` the pumps sit behind a ThingsBoard gateway (a bench-local client of the
gateway API that connects them and answers server-side RPC after the same delay), so the
commands go through the ThingsBoard downlink (``control.downlinks``) instead.
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson
import paho.mqtt.client as mqtt
import psycopg

from bench.ingest import quantile, scrape
from bench.proccpu import stop
from citypulse import schema
from citypulse.catalogue import MAX_SLOTS, device_kind
from citypulse.settings import Settings
from citypulse.stack import PrivateMosquitto, PrivatePostgres, free_port
from citypulse.wire import foreign as wf
from control import api
from device_sim.loadgen import LoadSpec, gateway_of, run_load
from ingest import metrics as im
from ingest import registry

DELAY_S = (0.05, 0.1)
OP = {"by": "bench", "role": "operator"}


def _register_pumps(conn: psycopg.Connection, ids: list[str], zone: str) -> None:
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO citypulse.sensors (sensor_id, kind, lon, lat, props) "
                        "VALUES (%s, 'pump', 121.93, 30.9, %s)",
                        [(i, f'{{"zone_id": "{zone}"}}') for i in ids])


def _sump_readings(conn: psycopg.Connection, store: schema.Store, ids: list[str]) -> None:
    """A fresh, wet sump level for each pump (the start precondition reads it)."""
    rows = conn.execute("SELECT id FROM citypulse.sensors WHERE sensor_id = ANY(%s)",
                        (ids,)).fetchall()
    vals: list[float | None] = [None] * MAX_SLOTS
    vals[device_kind("pump").slot_of["sump_level_m"]] = 2.0
    now = datetime.now(UTC)
    store.write_rows(conn, [(now, r[0], None, *vals) for r in rows])


def _ids(n: int) -> list[str]:
    return [f"s{i:06d}" for i in range(n)]


def _load_main(host: str, port: int, prefix: str, sensors: int, rate: float,
               per_message: int) -> None:
    """The sensor load, run in its own process (``python -c``) until it is terminated."""
    run_load(LoadSpec(host, port, prefix, tuple(_ids(sensors)), rate, 24 * 3600.0,
                      per_message, 1, 1))


class _TbGateway:
    """A ThingsBoard gateway (its MQTT gateway API) in front of ``devices``.

    Connects them, and answers every RPC request after ``delay_s`` with ``{"ok": true}``.
    """

    def __init__(self, host: str, port: int, devices: list[str], delay_s: tuple[float, float]):
        self.delay_s = delay_s
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-tb-gateway",
                             protocol=mqtt.MQTTv311)
        ready = threading.Event()
        self.c.on_connect = lambda c, *_: c.subscribe(wf.TB_RPC, 1)
        self.c.on_subscribe = lambda *_: ready.set()
        self.c.on_message = self._on_rpc
        self.c.max_inflight_messages_set(200)
        self.c.connect(host, port)
        self.c.loop_start()
        if not ready.wait(30):
            raise RuntimeError("bench gateway could not subscribe to v1/gateway/rpc")
        for name in devices:
            self.c.publish(wf.TB_CONNECT, orjson.dumps({"device": name, "type": "pump"}), qos=1)

    def _on_rpc(self, _c, _u, m) -> None:
        doc = orjson.loads(m.payload)
        data = doc.get("data") or {}
        if isinstance(data, dict) and "method" in data:
            reply = orjson.dumps({"device": doc["device"], "id": data["id"], "data": {"ok": True}})
            threading.Timer(random.uniform(*self.delay_s), self.c.publish,
                            (wf.TB_RPC, reply), {"qos": 1}).start()

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def _wait(fn, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fn():
            return True
        time.sleep(0.01)
    return False


class _Collector:
    """``citypulse ingest`` as a subprocess, with its /metrics."""

    def __init__(self, env: dict, log: Path) -> None:
        self.port = free_port()
        self.log = open(log, "wb")  # closed by run()
        self.proc = subprocess.Popen([sys.executable, "-m", "citypulse", "ingest",
                                      "--metrics-port", str(self.port)], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        if not _wait(lambda: self._value(im.CONNECTED) == 1 or self.proc.poll() is not None,
                     120) or self.proc.poll() is not None:
            raise RuntimeError("collector did not start; log:\n" + log.read_text()[-3000:])

    def _value(self, name: str) -> float:
        with contextlib.suppress(OSError):
            return sum(v for _, v in scrape(self.port).get(name, []))
        return -1.0

    def stored(self) -> float:
        return self._value(im.total(im.STORED))

    def lag_ms(self) -> dict:
        buckets = [(float(lbl["le"]), v) for lbl, v in
                   scrape(self.port).get(im.LAG_SECONDS + "_bucket", [])]
        return {k: None if (x := quantile(buckets, q)) is None else round(x * 1000, 1)
                for k, q in (("p50", 0.5), ("p99", 0.99))}


def run(singles: int = 50, fleet: int = 1000, sensors: int = 200_000, rate: float = 20_000.0,
        per_message: int = 100, warmup_s: float = 15.0, via: str = "native",
        progress=None) -> dict:
    """Run the benchmark on private PostgreSQL and Mosquitto; see the module doc."""
    from device_sim.actuators import ActuatorSim

    say = progress or (lambda _m: None)
    with tempfile.TemporaryDirectory(prefix="cp-bench-cmd-") as d:
        tmp = Path(d)
        with PrivatePostgres(tmp / "pg") as pg, PrivateMosquitto(tmp / "mq") as mq:
            settings = Settings(database_url=pg.url, mqtt_url=mq.url, topic_prefix="bench",
                                commands_fleet_rate=1_000_000.0, data_dir=tmp)
            conn = psycopg.connect(pg.url, autocommit=True)
            store = schema.Store.open(conn, settings)
            t = time.perf_counter()
            ids = _ids(sensors)
            say(f"registering {sensors} sensors")
            registry.upsert(conn, [registry.SensorRecord(sid, "traffic", 121.93, 30.9,
                                                         gateway_of(i, per_message), "{}")
                                   for i, sid in enumerate(ids)])
            registry_s = time.perf_counter() - t
            single_ids, fleet_ids = ["pmp-single"], [f"pmp-f{i:05d}" for i in range(fleet)]
            _register_pumps(conn, single_ids, "bench-single")
            _register_pumps(conn, fleet_ids, "bench-fleet")
            env = {**os.environ, "CITYPULSE_DATABASE_URL": pg.url, "CITYPULSE_MQTT_URL": mq.url,
                   "CITYPULSE_TOPIC_PREFIX": settings.topic_prefix,
                   "CITYPULSE_SPOOL_DIR": str(tmp / "spool"),
                   "CITYPULSE_SOURCES": "" if via == "native" else via,
                   "CITYPULSE_DEVICE_RATE_LIMIT": "1000000",
                   "CITYPULSE_COMMANDS_FLEET_RATE": "1000000"}
            col = worker = loader = sim = None
            try:
                say("starting the collector and the commands worker")
                col = _Collector(env, tmp / "collector.log")
                with open(tmp / "worker.log", "wb") as wlog:  # the child keeps its own handle
                    worker = subprocess.Popen([sys.executable, "-m", "citypulse", "commands",
                                               "run"], env=env, stdout=subprocess.DEVNULL,
                                              stderr=wlog)
                pumps = single_ids + fleet_ids
                if via == "thingsboard":
                    sim = _TbGateway(settings.mqtt.host, settings.mqtt.port, pumps, DELAY_S)
                    if not _wait(lambda: conn.execute(
                            "SELECT count(*) FROM citypulse.source_devices").fetchone()[0]
                            == len(pumps), 120):
                        raise RuntimeError("the collector did not learn the gateway's devices")
                elif via == "native":
                    sim = ActuatorSim(mq.url, settings.topic_prefix,
                                      [(i, "pump") for i in pumps], delay_s=DELAY_S,
                                      telemetry=False)
                    sim.session.wait_connected(30)
                else:
                    raise ValueError(f"via {via!r}: native or thingsboard")
                if sensors:
                    ep = settings.mqtt
                    args = (ep.host, ep.port, settings.topic_prefix, sensors, rate, per_message)
                    loader = subprocess.Popen(
                        [sys.executable, "-c", f"from bench.commands import _load_main; "
                         f"_load_main(*{args!r})"], env=env, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL)
                say(f"{sensors} sensors at {rate:g} readings/s offered; warming up {warmup_s:g} s")
                _sump_readings(conn, store, single_ids + fleet_ids)
                warm = api.request(conn, settings, "pmp-single", "stop", **OP)
                if not _wait(lambda: _status(conn, warm["id"]) == "succeeded", 120):
                    raise RuntimeError("the commands worker did not answer; log:\n"
                                       + (tmp / "worker.log").read_text()[-3000:])
                time.sleep(warmup_s)
                t0, stored0 = time.monotonic(), col.stored()
                say(f"timing {singles} single commands")
                lat = []
                for i in range(singles):
                    rec = api.request(conn, settings, "pmp-single",
                                      "start" if i % 2 == 0 else "stop", **OP)
                    _wait(lambda rid=rec["id"]: _status(conn, rid) in ("succeeded", "failed"), 60)
                    ms, status = conn.execute(
                        "SELECT extract(epoch FROM finished_at - created_at) * 1000, status "
                        "FROM citypulse.commands WHERE id = %s", (rec["id"],)).fetchone()
                    if status == "succeeded":
                        lat.append(float(ms))
                singles_s = time.monotonic() - t0
                say(f"fleet command to {fleet} pumps")
                fl = _fleet(conn, settings, fleet)
                t1, stored1 = time.monotonic(), col.stored()
                lag = col.lag_ms()
                load_avg = os.getloadavg()
            finally:
                if sim is not None:
                    sim.close()
                stop([loader, worker, col.proc if col else None])
                if col is not None:
                    col.log.close()
                conn.close()
    arr = np.array(lat) if lat else np.array([np.nan])
    return {"via": via, "singles": singles, "succeeded": len(lat),
            "singles_s": round(singles_s, 2),
            "latency_ms": {"p50": round(float(np.percentile(arr, 50)), 1),
                           "p95": round(float(np.percentile(arr, 95)), 1),
                           "max": round(float(arr.max()), 1)},
            "device_delay_s": list(DELAY_S),
            "fleet": fl,
            "sensor_load": {"sensors": sensors, "per_message": per_message,
                            "offered_per_s": rate,
                            "stored_per_s_while_commanding": round(
                                (stored1 - stored0) / max(1e-6, t1 - t0), 1),
                            "collector_lag_ms": lag, "registry_load_s": round(registry_s, 1)},
            "load_average_1_5_15": [round(x, 1) for x in load_avg]}


def _status(conn: psycopg.Connection, cid) -> str:
    return conn.execute("SELECT status FROM citypulse.commands WHERE id = %s",
                        (cid,)).fetchone()[0]


def _fleet(conn: psycopg.Connection, settings: Settings, fleet: int) -> dict:
    """One fleet command to the zone's pumps: times to persisted, all sent, all succeeded."""
    t0 = time.perf_counter()
    out = api.fleet(conn, settings, "pump", "start", {"zone": "bench-fleet"}, **OP)
    requested = time.perf_counter() - t0

    def count(states: list[str]) -> int:
        return conn.execute("SELECT count(*) FROM citypulse.commands WHERE fleet_id = %s "
                            "AND status = ANY(%s)", (out["fleet_id"], states)).fetchone()[0]

    _wait(lambda: count(["sent", "delivered", "succeeded"]) == fleet, 300)
    all_sent = time.perf_counter() - t0
    _wait(lambda: count(["succeeded"]) == fleet, 300)
    all_ok = time.perf_counter() - t0
    return {"devices": fleet, "persisted_s": round(requested, 3),
            "all_sent_s": round(all_sent, 3), "all_succeeded_s": round(all_ok, 3),
            "succeeded": count(["succeeded"])}
