"""Running the simulation: readings -> wire-contract messages -> MQTT, in one or more processes.

In: a :class:`RunConfig` (deployment file, broker, rate or speed-up, duration, scenario,
recording, QoS, gateway or single payloads, processes).  Out: :func:`run` publishes until the
duration ends (or Ctrl-C / ``stop`` event) and returns a :class:`RunSummary` (offered vs
achieved readings/s, messages, publish errors).  Each worker process has its own paho client,
drives its own loop and bounds QoS 1 messages in flight.  :func:`encode_batch` turns a
:class:`~device_sim.behaviour.Batch` into (topic, payload) pairs and is pure.
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import polars as pl

from citypulse.catalogue import KINDS
from citypulse.wire import topics
from device_sim import deploy as deploy_mod
from device_sim import dialects
from device_sim import scenario as scenario_mod
from device_sim.behaviour import (
    BAD_JSON,
    BAD_METRIC,
    BAD_RANGE,
    BAD_VALUE,
    KIND_NAMES,
    METRICS,
    Batch,
    Faults,
    Fleet,
    due,
    readings,
)
from device_sim.mqtt import RECORD_SCHEMA, Publisher, Recorder

log = logging.getLogger(__name__)
SCENARIO_DIR = Path(__file__).parent / "scenarios"

_NAMES = [tuple(m.name for m in KINDS[k].metrics) for k in KIND_NAMES]
_MAX = [tuple(m.max for m in KINDS[k].metrics) for k in KIND_NAMES]


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs (picklable: it is sent to the worker processes)."""

    deployment: Path
    mqtt_url: str
    prefix: str = "city"
    seed: int = 0
    rate: float | None = None  # readings/s offered (sensors report faster)
    speedup: float = 1.0  # simulated seconds per wall second
    duration: float | None = None  # wall seconds; None = until stopped
    start: float | None = None  # simulated start, epoch seconds (default: now)
    scenario_start: bool = False  # start at the scenario file's own ``start``
    scenario: Path | None = None
    record: Path | None = None
    qos: int = 0
    gateway: bool = True  # gateway payloads for sensors behind a gateway
    processes: int = 0  # 0 = as many as the rate needs (at most the cores)
    tick: float = 0.25  # wall seconds between publishing rounds
    faults: Faults = field(default_factory=Faults)
    max_inflight: int = 200
    device_connections: int = 4  # direct sensors per worker with their own connection + will
    ca_file: Path | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    dialect: str = "native"  # or thingsboard | chirpstack | ttn | http (device_sim.dialects)
    http_url: str | None = None  # http dialect: the dashboards' base URL
    api_key: str | None = None  # http dialect: a key with scope ingest:http
    encoding: str = "json"  # or msgpack (device_sim.encode; MQTT 5 content type)


@dataclass(frozen=True)
class RunSummary:
    """What a run did."""

    processes: int
    elapsed_s: float
    sim_start: str
    sim_end: str
    offered_readings_per_s: float
    achieved_readings_per_s: float
    readings: int
    messages: int
    messages_per_s: float
    publish_errors: int
    record: str | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def resolve_scenario(name: str | Path | None) -> Path | None:
    """A scenario path, or the name of a shipped one (``accident`` -> scenarios/accident.yaml)."""
    if name is None:
        return None
    p = Path(name)
    if p.exists():
        return p
    shipped = SCENARIO_DIR / f"{p.stem}.yaml"
    if shipped.exists():
        return shipped
    raise FileNotFoundError(f"no scenario {name}; shipped: "
                            f"{', '.join(sorted(x.stem for x in SCENARIO_DIR.glob('*.yaml')))}")


# --- encoding -----------------------------------------------------------------------------------

def _reading_objs(fleet: Fleet, batch: Batch) -> list[dict]:
    """One wire-contract reading object per row of ``batch`` (bad codes applied)."""
    n = len(batch)
    objs: list[Any] = [None] * n
    kinds = fleet.kind[batch.idx]
    seq = batch.seq.tolist()
    ts = batch.ts_ms.tolist()
    for code in np.unique(kinds):
        rows = np.flatnonzero(kinds == code)
        names = _NAMES[code]
        mat = np.column_stack([batch.values[m][rows] for m in names]).tolist()
        for r, vals in zip(rows.tolist(), mat, strict=True):
            objs[r] = {"ts": ts[r], "seq": seq[r],
                       "values": {k: v for k, v in zip(names, vals, strict=True) if v == v}}
    for r in np.flatnonzero(batch.bad).tolist():
        code, obj = int(batch.bad[r]), objs[r]
        vals = obj["values"]
        first = next(iter(vals), None)
        if code == BAD_RANGE and first is not None:
            vals[first] = _MAX[kinds[r]][0] * 10 + 1
        elif code == BAD_METRIC:
            vals["bogus_metric"] = 1.0
        elif code == BAD_VALUE and first is not None:
            vals[first] = "ERR"
        elif code == BAD_JSON:
            obj["__garbled__"] = True
    return objs


def _values_expr() -> pl.Expr:
    """JSON text of a reading's ``values`` object, by kind, skipping absent (null) metrics."""
    expr = None
    for code, names in enumerate(_NAMES):
        parts = [pl.lit(f'"{m}":') + pl.col(m).cast(pl.String) for m in names]
        body = pl.concat_str(parts, separator=",", ignore_nulls=True)
        expr = (pl.when(pl.col("kind") == code) if expr is None
                else expr.when(pl.col("kind") == code)).then(body)
    return expr.otherwise(pl.lit(""))


_VALUES_EXPR = _values_expr()


def encode_batch(fleet: Fleet, batch: Batch, prefix: str, gateway: bool
                 ) -> list[tuple[str, bytes, int]]:
    """(topic, payload, readings) per message: gateway payloads for gateway sensors.

    Vectorised (polars string building); the bytes decode to exactly what
    :func:`encode_batch_reference` (orjson, one dict per reading) sends.
    """
    n = len(batch)
    if n == 0:
        return []
    gws = fleet.gateway_id[batch.idx]
    cols = {m: pl.Series(m, batch.values[m]).fill_nan(None) for m in METRICS}
    df = pl.DataFrame({"ts": batch.ts_ms, "seq": batch.seq, "kind": fleet.kind[batch.idx],
                       **cols})
    reading = df.select(pl.concat_str([
        pl.lit('{"ts":'), pl.col("ts").cast(pl.String), pl.lit(',"seq":'),
        pl.col("seq").cast(pl.String), pl.lit(',"values":{'), _VALUES_EXPR, pl.lit("}}")])
    ).to_series()
    grouped = np.array([g is not None for g in gws.tolist()]) if gateway else np.zeros(n, bool)
    bad = np.flatnonzero(batch.bad)
    if len(bad):
        texts = reading.to_list()
        sub = Batch(batch.idx[bad], batch.seq[bad], batch.ts_ms[bad],
                    {m: v[bad] for m, v in batch.values.items()}, batch.bad[bad])
        for r, obj in zip(bad.tolist(), _reading_objs(fleet, sub), strict=True):
            garbled = obj.pop("__garbled__", False)
            text = orjson.dumps(obj).decode()
            if garbled:
                text = '"<garbled reading>"' if grouped[r] else text[: max(1, len(text) // 2)]
            texts[r] = text
        reading = pl.Series("r", texts, dtype=pl.String)
    sids = fleet.sensor_id[batch.idx]
    out: list[tuple[str, bytes, int]] = []
    single = np.flatnonzero(~grouped)
    if len(single):
        texts = reading.gather(single).to_list() if len(single) < n else reading.to_list()
        head = f"{prefix}/{topics.VERSION}/{topics.TELEMETRY}/"
        out.extend((head + sid, text.encode(), 1)
                   for sid, text in zip(sids[single].tolist(), texts, strict=True))
    if grouped.any():
        rows = np.flatnonzero(grouped)
        g = pl.DataFrame({"gw": pl.Series(gws[rows].tolist(), dtype=pl.String),
                          "sid": pl.Series(sids[rows].tolist(), dtype=pl.String),
                          "r": reading.gather(rows)})
        per_sensor = g.group_by("gw", "sid", maintain_order=True).agg(
            pl.len().alias("n"),
            (pl.lit('"') + pl.first("sid") + pl.lit('":[') + pl.col("r").str.join(",")
             + pl.lit("]")).first().alias("doc"))
        per_gw = per_sensor.group_by("gw", maintain_order=True).agg(
            pl.col("n").sum(), (pl.lit("{") + pl.col("doc").str.join(",") + pl.lit("}"))
            .first().alias("doc"))
        for gw, nr, doc in per_gw.iter_rows():
            out.append((topics.gateway(gw, prefix), doc.encode(), nr))
    return out


class Heartbeats:
    """Gateways' heartbeats, as the wire contract asks.

    ``{}`` on a gateway's topic when it has sent nothing for ``topics.GATEWAY_HEARTBEAT_S``
    (wall time), unless the scenario has the gateway dark.
    """

    def __init__(self, fleet: Fleet, prefix: str, scenario: Any = None) -> None:
        gws = fleet.gateway_id
        self.ids = np.unique(gws[gws != None].astype(str))  # noqa: E711 - numpy object array
        self.topics = [topics.gateway(g, prefix) for g in self.ids.tolist()]
        self.index = {t: i for i, t in enumerate(self.topics)}
        self.last = np.full(len(self.ids), -np.inf)
        self.scenario = scenario

    def sent(self, topic: str, wall: float) -> None:
        """A message went out on ``topic`` at ``wall`` (monotonic seconds)."""
        i = self.index.get(topic)
        if i is not None:
            self.last[i] = wall

    def due(self, wall: float, sim_t: float) -> list[str]:
        """Topics on which to send a heartbeat now; marks them sent."""
        idx = np.flatnonzero(wall - self.last >= topics.GATEWAY_HEARTBEAT_S)
        if len(idx) and self.scenario is not None:
            idx = idx[~self.scenario.gateways_down(self.ids[idx], sim_t)]
        self.last[idx] = wall
        return [self.topics[i] for i in idx.tolist()]


def encode_batch_reference(fleet: Fleet, batch: Batch, prefix: str, gateway: bool
                           ) -> list[tuple[str, bytes, int]]:
    """Like :func:`encode_batch`, one Python dict per reading (slow; the tests' yardstick)."""
    objs = _reading_objs(fleet, batch)
    sids = fleet.sensor_id[batch.idx]
    gws = fleet.gateway_id[batch.idx]
    out: list[tuple[str, bytes, int]] = []
    groups: dict[str, dict[str, list]] = {}
    for sid, gw, obj in zip(sids.tolist(), gws.tolist(), objs, strict=True):
        garbled = obj.pop("__garbled__", False)
        if gateway and gw is not None:
            if garbled:
                obj = "<garbled reading>"  # not an object: a malformed fragment
            groups.setdefault(gw, {}).setdefault(sid, []).append(obj)
        else:
            payload = orjson.dumps(obj)
            if garbled:
                payload = payload[: max(1, len(payload) // 2)]  # truncated: not JSON
            out.append((topics.telemetry(sid, prefix), payload, 1))
    for gw, doc in groups.items():
        nr = sum(len(v) for v in doc.values())
        out.append((topics.gateway(gw, prefix), orjson.dumps(doc), nr))
    return out


# --- workers ------------------------------------------------------------------------------------

def partition(fleet: Fleet, n: int, gateway: bool) -> list[np.ndarray]:
    """Sensor positions per worker: whole gateways stay together."""
    if n <= 1:
        return [np.arange(len(fleet))]
    gw = fleet.gateway_id
    has = np.array([g is not None for g in gw.tolist()])
    key = np.arange(len(fleet)) % n
    if gateway and has.any():
        _, inv = np.unique(gw[has].astype(str), return_inverse=True)
        key = key.copy()
        key[has] = inv % n
    return [np.flatnonzero(key == w) for w in range(n)]


def _sim_start(cfg: RunConfig, scen: scenario_mod.Scenario | None) -> float:
    if cfg.start is not None:
        return cfg.start
    if cfg.scenario_start and scen is not None and scen.start is not None:
        return scen.start.timestamp()
    now = time.time()
    if cfg.speedup > 1 and cfg.duration:
        return now - (cfg.speedup - 1) * cfg.duration  # so that no reading is in the future
    return now


def worker(cfg: RunConfig, wid: int, nworkers: int, counters: Any, stop: Any,
           sync: tuple[Any, Any, Any], sim_start: float, rate_factor: float) -> None:
    """One publishing process: its share of the sensors, its own MQTT connection(s)."""
    logging.basicConfig(level=logging.WARNING)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us through ``stop``
    parent = os.getppid()
    dep = deploy_mod.read(cfg.deployment)
    full = Fleet.build(dep, cfg.seed, rate_factor=rate_factor)
    mine = partition(full, nworkers, cfg.gateway)[wid]
    fleet = full.subset(mine)
    scen = None
    if cfg.scenario is not None:
        scen = scenario_mod.load(cfg.scenario).resolve(
            dep, start=datetime.fromtimestamp(sim_start, UTC), seed=cfg.seed)
    rec = None
    if cfg.record is not None:
        rec = Recorder(Path(f"{cfg.record}.part{wid}"), worker=wid)
    if cfg.dialect == "http":
        pub = dialects.HttpPublisher(cfg.http_url or "http://127.0.0.1:8050", cfg.api_key or "")
    else:
        pub = Publisher(cfg.mqtt_url, f"citypulse-sim-{cfg.run_id}-{wid}",
                        max_inflight=cfg.max_inflight, ca_file=cfg.ca_file, recorder=rec,
                        encoding=cfg.encoding)
    pub.connect()
    # directly connected sensors: retained "online"; a few get their own connection with a
    # last will (retained "offline") as real devices do
    direct = [s for s, g in zip(fleet.sensor_id.tolist(), fleet.gateway_id.tolist(),
                                strict=True) if g is None]
    own: dict[str, Publisher] = {}
    for sid in direct[: cfg.device_connections if cfg.dialect != "http" else 0]:
        dev = Publisher(cfg.mqtt_url, f"{sid}-{cfg.run_id}", will=(
            topics.status(sid, cfg.prefix), b"offline"), max_inflight=cfg.max_inflight,
            ca_file=cfg.ca_file)
        dev.connect()
        dev.recorder = rec
        own[sid] = dev
    # all workers loaded and connected: the clock starts for everyone at once
    ready, go, start_at = sync
    ready[wid] = 1
    while not go.wait(0.5):
        pub.pump(0.0)
        if stop.is_set() or os.getppid() != parent:
            break
    if not go.is_set():  # stopped before the start
        for p in (*own.values(), pub):
            p.close()
        return
    t0 = start_at.value
    for p in (pub, *own.values()):
        p.t0 = t0
    beats = Heartbeats(fleet, cfg.prefix, scen) if cfg.gateway and cfg.dialect == "native" \
        else None
    for sid in direct:
        (own.get(sid) or pub).publish(topics.status(sid, cfg.prefix), b"online", qos=1,
                                      retain=True)
    sent_r = sent_m = offered = 0
    a = sim_start
    sim_end = None if cfg.duration is None else sim_start + cfg.duration * cfg.speedup
    wall0 = t0
    max_window = max(4 * cfg.tick, 1.0) * cfg.speedup
    try:
        while True:
            now = time.monotonic()
            target = sim_start + (now - wall0) * cfg.speedup
            if sim_end is not None:
                target = min(target, sim_end)
            # behind schedule: catch up in bounded windows (memory stays flat, nothing skipped)
            b = min(target, a + max_window)
            behind = b < target
            last = stop.is_set() or (sim_end is not None and b >= sim_end) or \
                os.getppid() != parent
            if b > a:
                idx, k, t = due(fleet, a, b, scen)
                batch = readings(fleet, idx, k, t, scenario=scen, faults=cfg.faults)
                offered += len(idx)
                for topic, payload, nr in dialects.translate(
                        cfg.dialect, encode_batch(fleet, batch, cfg.prefix, cfg.gateway),
                        cfg.prefix):
                    sid = topic.rsplit("/", 1)[-1]
                    p = own.get(sid, pub) if own else pub
                    if p.publish(topic, payload, qos=cfg.qos):
                        sent_m += 1
                        sent_r += nr
                        if beats is not None:
                            beats.sent(topic, now)
                a = b
            if beats is not None:
                for topic in beats.due(now, b):
                    if pub.publish(topic, b"{}", qos=cfg.qos):
                        sent_m += 1
            errors = pub.errors + sum(d.errors for d in own.values())
            counters[wid * 5: wid * 5 + 4] = [sent_m, sent_r, errors, offered]
            if last:
                break
            pub.pump(0.0)
            for d in own.values():
                d.pump(0.0)
            sleep = 0.0 if behind else cfg.tick - (time.monotonic() - now)
            while sleep > 0:
                pub.pump(min(sleep, 0.05))
                sleep = cfg.tick - (time.monotonic() - now)
    finally:
        for d in own.values():
            d.recorder = None
            d.close()
        pub.close()
        errors = pub.errors + sum(d.errors for d in own.values())
        counters[wid * 5: wid * 5 + 5] = [sent_m, sent_r, errors, offered, time.monotonic()]


def merge_records(record: Path, nworkers: int) -> None:
    """Join the workers' part files into one recording, in send order."""
    parts = [Path(f"{record}.part{w}") for w in range(nworkers)]
    frames = [pl.read_parquet(p) for p in parts if p.exists()]
    df = (pl.concat(frames) if frames else pl.DataFrame(schema=pl.Schema(RECORD_SCHEMA))
          ).sort("offset_s", "worker", "n")
    df.write_parquet(record)
    for p in parts:
        p.unlink(missing_ok=True)


def run(cfg: RunConfig, progress: Callable[[dict], None] | None = None,
        stop: Any = None) -> RunSummary:
    """Run the simulation (see module docstring); ``progress`` gets counters twice a second."""
    dep = deploy_mod.read(cfg.deployment)
    scen = scenario_mod.load(cfg.scenario) if cfg.scenario else None
    sim_start = _sim_start(cfg, scen)
    nominal = Fleet.build(dep, cfg.seed, with_routes=False).nominal_rate
    factor = (cfg.rate / cfg.speedup / nominal) if cfg.rate else 1.0
    offered_rate = nominal * factor * cfg.speedup
    n = cfg.processes or max(1, min(os.cpu_count() or 1, math.ceil(
        offered_rate / (150_000 if cfg.gateway else 25_000))))
    if cfg.record:
        Path(cfg.record).parent.mkdir(parents=True, exist_ok=True)
    ctx = mp.get_context("spawn")
    counters = ctx.Array("d", 5 * n, lock=False)
    stop = stop or ctx.Event()
    ready, go, start_at = ctx.Array("b", n, lock=False), ctx.Event(), ctx.Value("d", 0.0)
    t0 = time.monotonic()
    procs = [ctx.Process(target=worker, args=(cfg, w, n, counters, stop, (ready, go, start_at),
                                              sim_start, factor),
                         daemon=True, name=f"sim-{w}") for w in range(n)]
    saved = os.environ.get("POLARS_MAX_THREADS")
    os.environ["POLARS_MAX_THREADS"] = "1"  # one core per worker: processes give the parallelism
    try:
        for p in procs:
            p.start()
    finally:
        if saved is None:
            os.environ.pop("POLARS_MAX_THREADS", None)
        else:
            os.environ["POLARS_MAX_THREADS"] = saved
    old = None
    if threading.current_thread() is threading.main_thread():
        old = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        deadline = time.monotonic() + 300
        while not all(ready) and any(p.is_alive() for p in procs) and not stop.is_set() \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        t0 = time.monotonic()
        start_at.value = t0
        go.set()
        while any(p.is_alive() for p in procs):
            time.sleep(0.5)
            if progress:
                progress(_totals(counters, n, max(time.monotonic() - t0, 1e-3), offered_rate,
                                 cfg.duration))
    except KeyboardInterrupt:
        stop.set()
    finally:
        for p in procs:
            p.join(30)
        if old is not None:
            signal.signal(signal.SIGTERM, old)
    ends = [e for e in list(counters)[4::5] if e > 0]
    elapsed = max((max(ends) if ends else time.monotonic()) - t0, 1e-3)
    tot = _totals(counters, n, elapsed, offered_rate, cfg.duration)
    if progress:
        progress({**tot, "done": True})
    failed = [p.name for p in procs if p.exitcode not in (0, None)]
    if failed:
        log.error("worker(s) failed: %s", ", ".join(failed))
    if cfg.record:
        merge_records(Path(cfg.record), n)
    sim_end = sim_start + elapsed * cfg.speedup
    return RunSummary(
        processes=n, elapsed_s=round(elapsed, 3),
        sim_start=datetime.fromtimestamp(sim_start, UTC).isoformat(),
        sim_end=datetime.fromtimestamp(sim_end, UTC).isoformat(),
        offered_readings_per_s=round(offered_rate, 1),
        achieved_readings_per_s=round(tot["readings"] / elapsed, 1),
        readings=int(tot["readings"]), messages=int(tot["messages"]),
        messages_per_s=round(tot["messages"] / elapsed, 1),
        publish_errors=int(tot["errors"]) + len(failed),
        record=str(cfg.record) if cfg.record else None)


def _totals(counters: Any, n: int, elapsed: float, offered: float,
            duration: float | None) -> dict:
    vals = list(counters)
    m = sum(vals[0::5])
    r = sum(vals[1::5])
    return {"messages": m, "readings": r, "errors": sum(vals[2::5]), "elapsed": elapsed,
            "rate": r / elapsed, "offered": offered, "duration": duration}
