"""One publishing process of a run: its share of the sensors, its own MQTT connection(s).

:func:`partition` splits the fleet between workers (whole gateways stay together);
:func:`worker` loads the deployment and scenario, waits for the common start, then publishes
its sensors' readings tick by tick (catching up in bounded windows when behind) and the
gateways' heartbeats (:class:`Heartbeats`).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from citypulse.wire import topics
from device_sim import deploy as deploy_mod
from device_sim import dialects
from device_sim import scenario as scenario_mod
from device_sim.behaviour import Fleet, due, readings
from device_sim.effects import ActuatorWatch, Effects, World, read_actuators
from device_sim.encode import encode_batch
from device_sim.mqtt import Publisher, Recorder

if TYPE_CHECKING:
    from device_sim.run import RunConfig


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
    effects, watch = None, None
    if cfg.actuators is not None:  # the actuators' effects show in the readings
        effects = Effects(read_actuators(cfg.actuators))
        watch = ActuatorWatch(cfg.mqtt_url, cfg.prefix, effects.watched(),
                              f"citypulse-sim-{cfg.run_id}-{wid}-fx", ca_file=cfg.ca_file)
    world = scen if effects is None else World(scen, effects)
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
                if watch is not None:  # reports stamped with the simulated time they came
                    for dev, state, wall in watch.take():
                        effects.observe(dev, state, sim_start + (wall - wall0) * cfg.speedup)
                idx, k, t = due(fleet, a, b, world)
                batch = readings(fleet, idx, k, t, scenario=world, faults=cfg.faults)
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
        if watch is not None:
            watch.close()
        for d in own.values():
            d.recorder = None
            d.close()
        pub.close()
        errors = pub.errors + sum(d.errors for d in own.values())
        counters[wid * 5: wid * 5 + 5] = [sent_m, sent_r, errors, offered, time.monotonic()]
