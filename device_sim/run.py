"""Running the simulation: readings -> wire-contract messages -> MQTT, in one or more processes.

In: a :class:`RunConfig` (deployment file, broker, rate or speed-up, duration, scenario,
recording, QoS, gateway or single payloads, processes).  Out: :func:`run` publishes until the
duration ends (or Ctrl-C / ``stop`` event) and returns a :class:`RunSummary` (offered vs
achieved readings/s, messages, publish errors).  Each worker process has its own paho client,
drives its own loop and bounds QoS 1 messages in flight (:mod:`device_sim.worker`);
:mod:`device_sim.encode` turns readings into wire-contract messages.
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

import polars as pl

from device_sim import deploy as deploy_mod
from device_sim import scenario as scenario_mod
from device_sim.behaviour import Faults, Fleet
from device_sim.mqtt import RECORD_SCHEMA
from device_sim.worker import worker

log = logging.getLogger(__name__)
SCENARIO_DIR = Path(__file__).parent / "scenarios"


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
    actuators: Path | None = None  # actuators file: their reported states change readings
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
    failed_workers: tuple[str, ...] = ()  # publishing processes that exited with an error

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


def _sim_start(cfg: RunConfig, scen: scenario_mod.Scenario | None) -> float:
    if cfg.start is not None:
        return cfg.start
    if cfg.scenario_start and scen is not None and scen.start is not None:
        return scen.start.timestamp()
    now = time.time()
    if cfg.speedup > 1 and cfg.duration:
        return now - (cfg.speedup - 1) * cfg.duration  # so that no reading is in the future
    return now


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
        record=str(cfg.record) if cfg.record else None, failed_workers=tuple(failed))


def _totals(counters: Any, n: int, elapsed: float, offered: float,
            duration: float | None) -> dict:
    vals = list(counters)
    m = sum(vals[0::5])
    r = sum(vals[1::5])
    return {"messages": m, "readings": r, "errors": sum(vals[2::5]), "elapsed": elapsed,
            "rate": r / elapsed, "offered": offered, "duration": duration}
