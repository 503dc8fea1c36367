"""``citypulse bench alerts``: detection latency, precision and recall per incident scenario.

In: a sensor count (the simulator's deployment on the twin's city), the simulator's scenario
files (``device_sim/scenarios/*.yaml``) and their ground truth
(:func:`device_sim.scenario.expected_alerts`).  Out: a dict (printed as JSON) with, per
scenario, ``recall``, ``precision``, ``p50_ms``, ``p95_ms`` (incident start in the scenario
file -> alert received by an MQTT subscriber), ``detect_p50_ms``/``detect_p95_ms``
(the condition true in the data for the rule's ``for_s`` hold -> alert received: the
engine's own delay, without the incident's ramp-up and the rules' hold times; for ``offline``
it includes the 3-heartbeat silence that defines a dark gateway), ``by_incident`` (each
incident's latency and first rule), ``sim_p95_ms``/``detect_sim_p95_ms`` (the same by the
simulated clock alone: what the rules decide, without this machine's speed), alerts, false
alerts, and for a gateway outage
``latency_floor_ms``/``latency_floor_why`` (the least latency the offline rule's definition
allows, ``silence_required_ms``); plus ``quiet``: false alerts in a quiet period (default
one simulated hour of a working day's evening peak, ``BUSY_START``).  Every scenario runs at
its file's own ``start`` (else ``BUSY_START``), so a run scores the same on any day.

How: a private PostgreSQL and Mosquitto are started; the simulator's behaviour model
generates every sensor's readings (device_sim.behaviour, incidents applied by the scenario)
on a virtual clock (5 s steps to warm up, 1 s steps from 60 s before the first incident),
written with ``Store.write_rows`` with the gateways' heartbeats (the collector is measured
by ``bench ingest``); after each step the engine ticks at that virtual time and publishes
over the real broker.  Latency = virtual time from the incident start to the tick that
opened the alert + the wall time from that tick's start to the MQTT subscriber's receipt.
"""

from __future__ import annotations

import logging
import queue
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import paho.mqtt.client as mqtt
import psycopg

from analytics.delivery import Delivery
from analytics.engine import CityModel, Engine
from analytics.rules import load_rules
from citypulse import schema
from citypulse.catalogue import KINDS, MAX_SLOTS
from citypulse.settings import Settings
from citypulse.wire import topics
from citypulse.wire.topics import GATEWAY_HEARTBEAT_S

log = logging.getLogger(__name__)

WARMUP_S = 240.0  # engine history before the scored window (offline needs 3 x 60 s)
LEAD_S = 60.0  # the scored window starts this long before the first incident
DETECT_WINDOW_S = 300.0  # ... and ends this long after the last one starts
STEP_S = 1.0
QUIET_STEP_S = 5.0
# Scenarios without their own start, and the quiet period, are simulated from here: a working
# Monday's evening peak (traffic at its busiest, the lakeside filling), the hardest hour to
# stay quiet in and to see an incident through.
BUSY_START = datetime.fromisoformat("2026-11-23T17:30:00+08:00")


def _pct(xs: list[float], q: float) -> float | None:
    return round(float(np.percentile(xs, q)), 1) if xs else None


class Sim:
    """The deployment in the store and a generator of its readings (from device_sim)."""

    def __init__(self, conn: psycopg.Connection, settings: Settings, n: int, seed: int) -> None:
        from device_sim.behaviour import KIND_NAMES, Fleet
        from device_sim.deploy import deploy

        self.dep = deploy(n, seed)
        self.fleet = Fleet.build(self.dep, seed)
        self.seed = seed
        self.store = schema.Store.open(conn, settings, migrate_now=False)
        prop_cols = [c for c in self.dep.columns
                     if c not in ("sensor_id", "kind", "lon", "lat", "gateway_id")]
        with conn.cursor() as cur, cur.copy(
                "COPY citypulse.sensors (sensor_id, kind, lon, lat, gateway_id, props) "
                "FROM STDIN") as copy:
            for r in self.dep.iter_rows(named=True):
                props = {c: r[c] for c in prop_cols if r[c] is not None}
                copy.write_row((r["sensor_id"], r["kind"], r["lon"], r["lat"], r["gateway_id"],
                                orjson.dumps(props).decode()))
        ids = dict(conn.execute("SELECT sensor_id, id FROM citypulse.sensors").fetchall())
        self.db_id = np.array([ids[s] for s in self.fleet.sensor_id], np.int64)
        self.kind_names = KIND_NAMES
        gws = self.dep["gateway_id"].drop_nulls().unique().sort()
        self.gateways = gws.to_numpy().astype(str)

    def heartbeats(self, conn: psycopg.Connection, t: float, scenario: Any) -> None:
        """Record the gateways' heartbeats at ``t``, as the collector would.

        Every step (the wire contract asks for one a second), all but the dark gateways.
        """
        g = self.gateways
        if scenario is not None:
            g = g[~scenario.gateways_down(g, t)]
        at = datetime.fromtimestamp(t, UTC)
        self.store.touch_gateways(conn, {x: (at, 1) for x in g.tolist()})

    def rows(self, a: float, b: float, scenario: Any) -> list[tuple]:
        """Reading rows due in (a, b] (epoch seconds), incidents applied."""
        from device_sim.behaviour import Faults, due, readings

        idx, k, t = due(self.fleet, a, b, scenario)
        if len(idx) == 0:
            return []
        batch = readings(self.fleet, idx, k, t, scenario, Faults())
        return self.rows_of(batch, batch.ts_ms)

    def rows_of(self, batch: Any, ts_ms: np.ndarray, keep: np.ndarray | None = None
                ) -> list[tuple]:
        """Store rows of a behaviour batch, stamped ``ts_ms``; only ``keep`` when given."""
        if keep is not None:
            sel = np.flatnonzero(keep)
            batch = type(batch)(batch.idx[sel], batch.seq[sel], ts_ms[sel],
                                {m: v[sel] for m, v in batch.values.items()}, batch.bad[sel])
            ts_ms = batch.ts_ms
        n = len(batch)
        vals = np.full((n, MAX_SLOTS), np.nan)
        kinds = self.fleet.kind[batch.idx]
        for code, name in enumerate(self.kind_names):
            sel = np.flatnonzero(kinds == code)
            if len(sel) == 0:
                continue
            for j, m in enumerate(KINDS[name].metrics):
                col = batch.values.get(m.name)
                if col is not None:
                    vals[sel, j] = col[sel]
        obj = vals.astype(object)
        obj[np.isnan(vals)] = None
        ts = [datetime.fromtimestamp(x / 1000, UTC) for x in ts_ms.tolist()]
        ids = self.db_id[batch.idx].tolist()
        seq = batch.seq.tolist()
        out = {}
        for i in range(n):
            out[(ids[i], ts[i])] = (ts[i], ids[i], seq[i], *obj[i])
        return list(out.values())


class Subscriber:
    """An MQTT subscriber to every alert topic, timestamping what it receives."""

    def __init__(self, settings: Settings) -> None:
        self.got: queue.Queue = queue.Queue()
        ready = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        c.on_connect = lambda cl, *a: cl.subscribe(topics.alert_subscription(settings.topic_prefix), 1)
        c.on_subscribe = lambda *a: ready.set()
        c.on_message = lambda cl, u, m: self.got.put((time.monotonic(), orjson.loads(m.payload)))
        c.connect(settings.mqtt.host, settings.mqtt.port)
        c.loop_start()
        if not ready.wait(10):
            raise RuntimeError("bench: MQTT subscriber could not subscribe")
        self.client = c

    def drain(self, wait_s: float = 0.5) -> list[tuple[float, dict]]:
        """Everything received so far (after waiting ``wait_s``): (monotonic time, message)."""
        time.sleep(wait_s)
        out = []
        while True:
            try:
                out.append(self.got.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        """Disconnect."""
        self.client.loop_stop()
        self.client.disconnect()


def _reset(conn: psycopg.Connection) -> None:
    conn.execute("TRUNCATE citypulse.alerts, citypulse.alert_events, "
                 "citypulse.alert_deliveries, citypulse.raw, citypulse.gateway_seen")


def _ids_of_alert(msg: dict) -> set[str]:
    ids = {str(msg["entity"]["id"])}
    for m in msg.get("scope") or []:
        ids.add(str(m).split(":", 1)[-1])
    return ids


def _simulate(sim: Sim, conn: psycopg.Connection, sub: Subscriber, delivery: Delivery,
              city: CityModel, scenario: Any, t_from: float, t_to: float, step: float,
              progress: Any = None, fine_from: float | None = None
              ) -> tuple[list[dict], dict]:
    """Run the virtual clock; return the 'open' alert messages with their timings.

    Steps are ``QUIET_STEP_S`` long before ``fine_from`` (the warm-up: history for the
    engine, not scored), ``step`` long after it; tick times are reported for the latter.
    """
    _reset(conn)
    sim.store.maintain(conn, now=datetime.fromtimestamp(t_from, UTC))  # the days simulated
    engine = Engine(conn, load_rules(sim.store.settings.rules_file), delivery, city=city)
    tick_wall: dict[int, float] = {}
    tick_ms: list[float] = []
    t = t_from
    last_rows = t_from - 1
    while t < t_to:
        fine = fine_from is None or t >= fine_from
        nxt = t + step if fine else min(t + QUIET_STEP_S, fine_from)
        rows = sim.rows(last_rows, nxt, scenario)
        last_rows = nxt
        if rows:
            sim.store.write_rows(conn, rows)
        sim.heartbeats(conn, nxt, scenario)
        w0 = time.monotonic()
        engine.tick(datetime.fromtimestamp(nxt, UTC))
        if fine:
            tick_ms.append((time.monotonic() - w0) * 1000)
        tick_wall[int(round(nxt * 1000))] = w0
        t = nxt
        if progress is not None:
            progress()
    received = sub.drain(1.0)
    opened = []
    for wall, msg in received:
        if msg.get("event") != "open":
            continue
        det = datetime.fromisoformat(msg["detected"]).timestamp()
        w0 = tick_wall.get(int(round(det * 1000)))
        msg["_virtual_s"] = det
        msg["_wall_ms"] = (wall - w0) * 1000 if w0 is not None else 0.0
        opened.append(msg)
    stats = {"tick_p50_ms": _pct(tick_ms, 50), "tick_p95_ms": _pct(tick_ms, 95),
             "ticks": len(tick_ms), "rows_per_tick": engine.stats["rows"] / max(1, len(tick_ms))}
    return opened, stats


def _score(expected: list, resolved: Any, opened: list[dict], warm_end: float,
           hold: dict[str, float]) -> dict:
    lat, det = [], []
    lat_sim, det_sim = [], []  # the same by the simulated clock alone (what the rules decide)
    matched_alerts: set[int] = set()
    hits = 0
    each: list[dict] = []
    for exp, b in zip(expected, sorted(resolved.incidents, key=lambda x: (x.start, x.type)),
                      strict=False):
        ids = set(exp.entity_ids) | set(exp.sensor_ids) | set(b.sensors) | set(b.segments) \
            | set(b.queue) | set(b.zones)
        start = exp.start.timestamp()
        found = [m for m in opened if _ids_of_alert(m) & ids
                 and start - 60 <= m["_virtual_s"] <= exp.end.timestamp() + 900]
        matched_alerts |= {m["id"] for m in found}
        each.append({"incident": exp.incident_type, "latency_ms": None, "rule": None})
        if found:
            hits += 1
            first = min(found, key=lambda m: m["_virtual_s"])
            lat_sim.append((first["_virtual_s"] - start) * 1000)
            lat.append(lat_sim[-1] + first["_wall_ms"])
            due = datetime.fromisoformat(first["started"]).timestamp() + hold.get(
                first["rule"], 0.0)
            det_sim.append(max(0.0, first["_virtual_s"] - max(due, start)) * 1000)
            det.append(det_sim[-1] + first["_wall_ms"])
            each[-1].update(latency_ms=round(lat[-1], 1), rule=first["rule"])
    considered = [m for m in opened if m["_virtual_s"] >= warm_end]
    false = [m for m in considered if m["id"] not in matched_alerts]
    return {
        "incidents": len(expected), "detected": hits,
        "recall": round(hits / len(expected), 3) if expected else None,
        "precision": round(1 - len(false) / len(considered), 3) if considered else None,
        "p50_ms": _pct(lat, 50), "p95_ms": _pct(lat, 95),
        "detect_p50_ms": _pct(det, 50), "detect_p95_ms": _pct(det, 95),
        "sim_p95_ms": _pct(lat_sim, 95), "detect_sim_p95_ms": _pct(det_sim, 95),
        "alerts": len(considered), "false_alerts": len(false),
        "false_sample": [f"{m['rule']}:{m['entity']['kind']}:{m['entity']['id']}"
                         for m in false[:5]],
        "by_incident": each,
    }


def score_scenario(sim: Sim, conn: psycopg.Connection, sub: Subscriber,
                   delivery: Delivery, city: CityModel, path: Path, seed: int = 0,
                   warmup_s: float = WARMUP_S, window_s: float = DETECT_WINDOW_S,
                   progress: Any = None) -> dict:
    """Simulate one scenario file on the virtual clock and score it against its ground truth."""
    from device_sim import scenario as scenario_mod

    scen = scenario_mod.load(path)
    start = bench_start(scen)
    resolved = scen.resolve(sim.dep, start=start, seed=seed)
    expected = scenario_mod.expected_alerts(resolved, sim.dep)
    t_from = start.timestamp() - warmup_s
    last = max((b.start for b in resolved.incidents), default=start.timestamp())
    opened, stats = _simulate(sim, conn, sub, delivery, city, resolved, t_from,
                              last + window_s, STEP_S, progress,
                              fine_from=start.timestamp() - LEAD_S)
    rules = load_rules(sim.store.settings.rules_file)
    hold = {r.id: r.for_s for r in rules.rules}
    return {**_score(expected, resolved, opened, start.timestamp() - LEAD_S, hold), **stats,
            **_floor(resolved, rules), "opened": opened}


def score_quiet(sim: Sim, conn: psycopg.Connection, sub: Subscriber, delivery: Delivery,
                city: CityModel, minutes: float, start: datetime = BUSY_START,
                warmup_s: float = WARMUP_S, progress: Any = None) -> dict:
    """Simulate ``minutes`` without incidents from ``start``: every alert in it is false."""
    q_from = start.timestamp() - warmup_s
    opened, stats = _simulate(sim, conn, sub, delivery, city, None, q_from,
                              start.timestamp() + minutes * 60, QUIET_STEP_S, progress)
    considered = [m for m in opened if m["_virtual_s"] >= start.timestamp()]
    return {"minutes": minutes, "start": start.isoformat(), "false_alerts": len(considered),
            "sample": [f"{m['rule']}:{m['entity']['kind']}:{m['entity']['id']}"
                       for m in considered[:5]], **stats}


def _floor(resolved: Any, rules: Any) -> dict:
    """The least latency a rule allows by definition, with the reason (else ``{}``).

    Gateway offline: a gateway is dark after ``factor`` heartbeats
    (``GATEWAY_HEARTBEAT_S``) without a message, counted from its last one, which came up
    to one heartbeat before the outage: ``silence_required_ms`` is that silence,
    ``latency_floor_ms`` the least latency from the outage start it allows.
    """
    off = rules.of_type("offline")
    if not off or not any(b.type == "gateway_outage" for b in resolved.incidents):
        return {}
    rule = off[0]
    return {"latency_floor_ms": (rule.factor - 1) * GATEWAY_HEARTBEAT_S * 1000,
            "silence_required_ms": rule.factor * GATEWAY_HEARTBEAT_S * 1000,
            "latency_floor_why": (f"rule {rule.id}: a gateway is offline only after "
                                  f"{rule.factor:g} x its heartbeat ({GATEWAY_HEARTBEAT_S:g} s)"
                                  " without a message, counted from its last one; no earlier "
                                  "alert without guessing")}


def bench_start(scen: Any) -> datetime:
    """When a scenario is simulated: its file's own ``start``, else ``BUSY_START``.

    A fixed date and time of day, so that a run scores the same whenever it is made (the
    city's traffic and crowds depend on both).
    """
    return scen.start.astimezone(UTC) if scen.start is not None else BUSY_START


def run_bench(n_sensors: int = 2000, quiet_minutes: float = 60.0, only: list[str] | None = None,
              progress: bool = True, seed: int = 0, faults_minutes: float = 30.0,
              faults_start: datetime | None = None) -> dict:
    """Run the scenarios, a quiet period and the fault-profile case; return figures.

    ``only``: these scenario names/files; ``quiet_minutes`` or ``faults_minutes`` 0 skips
    the quiet period or the fault-profile case (:mod:`bench.alerts_faults`).
    """
    from citypulse.stack import PrivateMosquitto, PrivatePostgres
    from device_sim import scenario as scenario_mod

    scen_dir = Path(scenario_mod.__file__).parent / "scenarios"
    files = sorted(scen_dir.glob("*.yaml"))
    if only:
        files = [f for f in files if f.stem in only or f.name in only or str(f) in only]
    tmp = Path(tempfile.mkdtemp(prefix="citypulse-bench-alerts-"))
    result: dict[str, Any] = {"sensors": n_sensors, "step_s": STEP_S, "scenarios": {}}
    t_start = time.monotonic()
    with PrivatePostgres(tmp / "pg") as pg, PrivateMosquitto(tmp / "mq") as mq:
        settings = Settings(database_url=pg.url, mqtt_url=mq.url, topic_prefix="bench")
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            schema.migrate(conn, settings)
            schema.Store.open(conn, settings, migrate_now=False)
            t0 = time.monotonic()
            sim = Sim(conn, settings, n_sensors, seed)
            result["deploy_s"] = round(time.monotonic() - t0, 2)
            result["nominal_readings_per_s"] = round(sim.fleet.nominal_rate, 1)
            city = CityModel()
            sub = Subscriber(settings)
            delivery = Delivery(settings, webhook_urls=[])
            delivery.wait_connected(10)
            try:
                from rich.progress import Progress

                with Progress(disable=not progress, transient=True) as bar:
                    for f in files:
                        task = bar.add_task(f.stem, total=None)
                        score = score_scenario(sim, conn, sub, delivery, city, f, seed,
                                               progress=lambda task=task: bar.advance(task))
                        score.pop("opened")
                        result["scenarios"][f.stem] = score
                    if quiet_minutes > 0:
                        steps = int((quiet_minutes * 60 + WARMUP_S) / QUIET_STEP_S)
                        task = bar.add_task("quiet", total=steps)
                        result["quiet"] = score_quiet(sim, conn, sub, delivery, city,
                                                      quiet_minutes,
                                                      progress=lambda: bar.advance(task))
                    if faults_minutes > 0:
                        from bench.alerts_faults import score_faults

                        steps = int((faults_minutes * 60 + WARMUP_S) / QUIET_STEP_S)
                        task = bar.add_task("faults", total=steps)
                        result["faults"] = score_faults(
                            sim, conn, sub, delivery, city, faults_minutes,
                            **({"start": faults_start} if faults_start else {}),
                            progress=lambda: bar.advance(task))
            finally:
                delivery.close()
                sub.close()
    recalls = [s["recall"] for s in result["scenarios"].values() if s["recall"] is not None]
    p95 = [s["p95_ms"] for s in result["scenarios"].values() if s["p95_ms"] is not None]
    result["summary"] = {"min_recall": min(recalls) if recalls else None,
                         "max_p95_ms": max(p95) if p95 else None,
                         "quiet_false_alerts": result.get("quiet", {}).get("false_alerts"),
                         "faults_wall_alerts": result.get("faults", {}).get("wall_alerts"),
                         "faults_upkeep_recall": result.get("faults", {}).get("upkeep_recall"),
                         "wall_s": round(time.monotonic() - t_start, 1)}
    return result
