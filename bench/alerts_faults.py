"""``citypulse bench alerts`` case ``faults``: an ordinary day with the demo's device faults.

In: a :class:`bench.alerts.Sim` (the deployment in the store), the demo's fault profile
(:meth:`device_sim.behaviour.Faults.default`), no incident.  Out: a dict with
``wall_alerts`` (alerts opened that would reach the wall and /emergency: every one is false,
the goal is 0) and the upkeep figures: ``injected`` devices per fault (stuck, clock ahead
beyond ``clock_ahead_s``, clock behind by a minute or more, battery low or dead; from the
simulator's own fault draw),
``tickets`` (open maintenance tickets at the end, by problem), ``upkeep_recall`` (injected
faulty devices with a ticket) and ``tickets_not_injected`` (tickets on devices without an
injected fault, with a sample).

How: the behaviour model generates every reading with the faults on; the readings pass the
collector's clock policy (:func:`ingest.validate.clock_check`, arrival = the step's end) and
its bad readings become dead letters, as the collector would; the engine ticks each step,
:func:`analytics.upkeep.run` every ``UPKEEP_EVERY_S`` of virtual time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg

from analytics import maintenance, upkeep
from analytics.engine import CityModel, Engine
from analytics.rules import load_rules
from citypulse.wire import payload as wp
from ingest.validate import Window, clock_check

# the demo's fault clock: a night hour (the walk, 05:35 local)
FAULT_START = datetime.fromisoformat("2026-11-24T05:35:00+08:00")
UPKEEP_EVERY_S = 60.0
CLOCK_BEHIND_S = 60.0
_BAD_REASON = {1: wp.OUT_OF_RANGE, 2: wp.UNKNOWN_METRIC, 3: wp.MALFORMED, 4: wp.MALFORMED}


def injected(sim: Any, t: float, clock_ahead_s: float) -> dict[str, set[str]]:
    """Sensor ids with each injected device fault at time ``t`` (the simulator's own draw)."""
    from device_sim.behaviour import TZ_OFFSET_S, Faults, uniform

    f = Faults.default()
    s = sim.fleet.seed
    idx = np.arange(len(sim.fleet.sensor_id))
    ids = np.asarray(sim.fleet.sensor_id)
    stuck = uniform(s, idx, 0, 41) < f.stuck
    weak = uniform(s, idx, 0, 43) < f.battery
    life = 3600 * (2 + 6 * uniform(s, idx, 0, 44))
    left = np.clip(100 * (1 - ((t + TZ_OFFSET_S) % 86400) / life), 0, 100)
    drifting = uniform(s, idx, 0, 45) < f.drift
    ppm = f.drift_ppm * (2 * uniform(s, idx, 0, 46) - 1)
    off = ppm * 1e-6 * (t % (30 * 86400))
    return {"stuck": set(ids[stuck].tolist()),
            "battery": set(ids[weak & (left < upkeep.BATTERY_LOW_PCT)].tolist()),
            "clock_ahead": set(ids[drifting & (off > clock_ahead_s)].tolist()),
            # a clock a minute or more behind: its readings look late, the sensor silent
            "clock_behind": set(ids[drifting & (off < -CLOCK_BEHIND_S)].tolist())}


def _step(sim: Any, conn: psycopg.Connection, a: float, b: float, settings: Any) -> None:
    """Readings due in (a, b] with the faults, through the collector's clock policy."""
    from device_sim.behaviour import Faults, due, readings

    idx, k, t = due(sim.fleet, a, b, None)
    if len(idx) == 0:
        return
    batch = readings(sim.fleet, idx, k, t, None, Faults.default())
    arrival = int(b * 1000)
    window = Window.of(arrival, settings)
    ts = batch.ts_ms.copy()
    keep = np.ones(len(ts), bool)
    dead: list[tuple] = []
    at = datetime.fromtimestamp(b, UTC)
    sids = np.asarray(sim.fleet.sensor_id)[batch.idx]
    for i in np.flatnonzero((ts - arrival > (window.ahead_ms or 0)) | (batch.bad > 0)):
        sid = str(sids[i])
        if batch.bad[i]:
            keep[i] = False
            dead.append((at, "bench", _BAD_REASON[int(batch.bad[i])], b"{}", "bench fault", sid))
            continue
        if ts[i] > window.newest_ms:
            keep[i] = False
            dead.append((at, "bench", wp.BAD_TIMESTAMP, b"{}",
                         f"too far in the future (ahead by {(ts[i] - arrival) / 1000:.1f} s)",
                         sid))
            continue
        new, why, detail = clock_check(int(ts[i]), arrival, window)
        dead.append((at, "bench", why, b"{}", detail, sid))
        if new is None:
            keep[i] = False
        else:
            ts[i] = new
    rows = sim.rows_of(batch, ts, keep)
    if rows:
        sim.store.write_rows(conn, rows)
    if dead:
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO citypulse.dead_letters VALUES (%s, %s, %s, %s, %s, %s)",
                            dead)


def score_faults(sim: Any, conn: psycopg.Connection, sub: Any, delivery: Any, city: CityModel,
                 minutes: float, start: datetime = FAULT_START, warmup_s: float = 240.0,
                 step_s: float = 5.0, progress: Any = None) -> dict:
    """Simulate ``minutes`` of the fault profile without incidents; score wall and upkeep."""
    from bench.alerts import _reset

    settings = sim.store.settings
    _reset(conn)
    conn.execute("TRUNCATE citypulse.dead_letters, citypulse.maintenance_tickets")
    t0, t_end = start.timestamp() - warmup_s, start.timestamp() + minutes * 60
    sim.store.maintain(conn, now=datetime.fromtimestamp(t0, UTC))
    engine = Engine(conn, load_rules(settings.rules_file), delivery, city=city)
    t, last_upkeep = t0, -1e18
    while t < t_end:
        nxt = t + step_s
        _step(sim, conn, t, nxt, settings)
        sim.heartbeats(conn, nxt, None)
        engine.tick(datetime.fromtimestamp(nxt, UTC))
        if nxt - last_upkeep >= UPKEEP_EVERY_S:
            last_upkeep = nxt
            upkeep.run(conn, datetime.fromtimestamp(nxt, UTC))
        t = nxt
        if progress is not None:
            progress()
    upkeep.run(conn, datetime.fromtimestamp(t_end, UTC))
    opened = [m for _w, m in sub.drain(1.0) if m.get("event") == "open"
              and datetime.fromisoformat(m["detected"]).timestamp() >= start.timestamp()]
    as_alerts = [{"rule": m["rule"], "entity_kind": m["entity"]["kind"],
                  "entity_id": m["entity"]["id"], "scope": m.get("scope") or []} for m in opened]
    wall, kept_off = maintenance.split(as_alerts)
    truth = injected(sim, t_end, settings.clock_ahead_s)
    faulty = set().union(*truth.values())
    tickets = upkeep.open_tickets(conn)
    ticketed = {x["device"] for x in tickets if x["kind"] == "sensor"}
    by_problem: dict[str, int] = {}
    for x in tickets:
        for p in x["problems"].split():
            by_problem[p] = by_problem.get(p, 0) + 1
    extra = sorted(ticketed - faulty)
    return {
        "minutes": minutes, "start": start.isoformat(), "sensors": len(sim.fleet.sensor_id),
        "wall_alerts": len(wall),
        "wall_sample": [f"{a['rule']}:{a['entity_kind']}:{a['entity_id']}" for a in wall[:5]],
        "upkeep_alerts_kept_off_wall": len(kept_off),
        "injected": {k: len(v) for k, v in truth.items()},
        "tickets": len(tickets), "tickets_by_problem": by_problem,
        "upkeep_recall": round(len(faulty & ticketed) / len(faulty), 3) if faulty else None,
        "recall_by_fault": {k: round(len(v & ticketed) / len(v), 3) if v else None
                            for k, v in truth.items()},
        "missed_sample": sorted(faulty - ticketed)[:5],
        "tickets_not_injected": len(extra),
        "not_injected_sample": [f"{x['device']}:{x['problems']}" for x in tickets
                                if x["device"] in extra][:5],
    }
