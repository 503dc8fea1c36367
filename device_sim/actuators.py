"""Simulated actuators that obey the commands contract (pumps, signs, signals, sirens).

In: the broker URL and topic prefix, the devices ``[(device_id, kind), ...]`` one MQTT 5
connection speaks for, and a behaviour profile (answer delay, share of commands dropped,
devices that fail every command).  Out: a running :class:`ActuatorSim` that

- subscribes to each device's ``commands/{id}`` and retained ``shadow/{id}/desired`` on a
  persistent session (commands sent while it was offline arrive when it reconnects; the
  desired state is applied on every connect);
- answers ``received`` at once, then executes after a realistic delay (one command at a
  time per device, in arrival order) and answers ``ok`` or ``error`` on the MQTT 5 response
  topic with the correlation data (else the plain ``commands/{id}/response`` topic);
- deduplicates on the command id: the same id delivered twice runs once and answers the
  same outcome again; an expired command is ignored, as the contract says;
- publishes each device's telemetry (pump: running, flow, sump level falling while it
  pumps; sign: showing; signal: plan, cycle; siren: sounding) at its shadow's interval;
- exposes :meth:`effects`: the zones whose drains the running pumps lower (metres per
  hour) and the segments whose speed a signal plan changes (factor); a run's sensors
  show them (:mod:`device_sim.effects`, following this telemetry on the broker);
- a fault profile drops a share of commands on arrival (``drop_share`` for every device,
  ``drops`` per device): never answered, never executed, counted in ``dropped``.

Any device following the contract works with citypulse; this is one of them.
"""

from __future__ import annotations

import heapq
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from citypulse.catalogue import ACTUATORS  # (citypulse.actuators first is a cycle)
from citypulse.wire import topics
from citypulse.wire.session import Session
from device_sim.effects import plan_speed, pump_fall_m_h

log = logging.getLogger(__name__)

PLANS = {1: 90, 2: 120, 3: 150, 4: 60, 9: 0}   # installed timing plans -> cycle (s)
SUMP_AREA_M2 = 40.0


@dataclass
class Device:
    """One simulated actuator's state."""

    device_id: str
    kind: str
    zone_id: str | None = None
    segment_id: str | None = None
    state: dict[str, float] = field(default_factory=dict)
    interval_s: float = 10.0
    shadow_version: int = 0
    outcomes: dict[str, dict] = field(default_factory=dict)   # id -> final answer
    pending: set[str] = field(default_factory=set)
    busy_until: float = 0.0
    executions: int = 0
    last_report: float = 0.0
    until: float | None = None  # monotonic time a timed command (plan, siren) runs out


class ActuatorSim:
    """See the module doc.  ``close()`` stops it (its broker session stays)."""

    def __init__(self, url: str, prefix: str, devices: list[tuple[str, str]] | list[dict], *,
                 client_id: str | None = None, delay_s: tuple[float, float] = (0.3, 1.2),
                 drop_share: float = 0.0, drops: dict[str, float] | None = None,
                 faulty: set[str] | None = None, seed: int = 0,
                 sump_level_m: float = 1.5, inflow_m3_h: float = 150.0,
                 telemetry: bool = True, ca_file: Path | None = None) -> None:
        self.prefix = prefix
        self.devices: dict[str, Device] = {}
        for d in devices:
            d = d if isinstance(d, dict) else {"device_id": d[0], "kind": d[1]}
            dev = Device(d["device_id"], d["kind"], d.get("zone_id"), d.get("segment_id"),
                         interval_s=ACTUATORS[d["kind"]].interval_s)
            dev.state = self._initial(d["kind"], sump_level_m)
            self.devices[dev.device_id] = dev
        self.delay_s = delay_s
        self.drop_share = drop_share
        self.drops = dict(drops or {})  # fault profile per device: share of commands lost
        self.faulty = set(faulty or ())
        self.rng = random.Random(seed)
        self.inflow_m3_h = inflow_m3_h
        self.telemetry = telemetry
        self.dropped = 0
        self.ignored_expired = 0  # distinct commands ignored as expired (re-sends count once)
        self._ignored: set[str] = set()
        self.lock = threading.Lock()
        self._jobs: list[tuple[float, int, Any]] = []
        self._n = 0
        self._wake = threading.Condition(self.lock)
        self._stop = threading.Event()
        subs = [t for d in self.devices for t in topics.device_subscriptions(d, prefix)]
        cid = client_id or f"sim-actuators-{prefix}-{next(iter(self.devices), 'none')}"
        self.session = Session(url, cid, subs, self._on_message, ca_file=ca_file)
        self._thread = threading.Thread(target=self._loop, name="actuators", daemon=True)
        self._thread.start()

    @staticmethod
    def _initial(kind: str, sump: float) -> dict[str, float]:
        return {"pump": {"running": 0.0, "flow_m3_h": 0.0, "sump_level_m": sump},
                "sign": {"showing": 0.0}, "signal": {"plan": 1.0, "cycle_s": 90.0},
                "siren": {"sounding": 0.0}}.get(kind, {})

    # --- MQTT -------------------------------------------------------------------------------
    def _on_message(self, topic: str, payload: bytes, props: Any) -> None:
        t = topics.parse(topic, self.prefix)
        dev = self.devices.get(t.ident)
        if dev is None:
            return
        body = orjson.loads(payload)
        if t.kind == topics.SHADOW_DESIRED:
            self._apply_desired(dev, body)
        elif t.kind == topics.COMMAND:
            self._on_command(dev, body, props)

    def _answer(self, dev: Device, body: dict, topic: str | None, corr: bytes | None) -> None:
        self.session.publish(topic or topics.command_response(dev.device_id, self.prefix),
                             orjson.dumps(body), correlation=corr)

    def _on_command(self, dev: Device, body: dict, props: Any) -> None:
        cid = str(body.get("id", ""))
        rtopic = getattr(props, "ResponseTopic", None)
        corr = getattr(props, "CorrelationData", None)
        with self.lock:
            if cid in dev.outcomes:  # a re-delivery: same outcome, not run again
                self._answer(dev, dev.outcomes[cid], rtopic, corr)
                return
            if cid in dev.pending:
                self._answer(dev, {"id": cid, "status": "received"}, rtopic, corr)
                return
            if body.get("expires") and time.time() * 1000 > float(body["expires"]):
                if str(cid) not in self._ignored:
                    self._ignored.add(str(cid))
                    self.ignored_expired += 1
                return
            share = self.drops.get(dev.device_id, self.drop_share)
            if share and self.rng.random() < share:
                self.dropped += 1  # fault profile: lost on the device
                return
            dev.pending.add(cid)
            delay = self.rng.uniform(*self.delay_s)
            due = max(time.monotonic() + delay, dev.busy_until + 0.05)
            dev.busy_until = due
            self._push(due, (dev, cid, body.get("method"), body.get("params") or {}, rtopic,
                             corr))
        self._answer(dev, {"id": cid, "status": "received", "ts": int(time.time() * 1000)},
                     rtopic, corr)

    def _apply_desired(self, dev: Device, body: dict) -> None:
        version = int(body.get("version", 0))
        state = body.get("state") or {}
        with self.lock:
            if "interval_s" in state:
                dev.interval_s = float(state["interval_s"])
            dev.shadow_version = max(dev.shadow_version, version)
        reported = {"version": version, "state": {"interval_s": dev.interval_s}}
        self.session.publish(topics.shadow_reported(dev.device_id, self.prefix),
                             orjson.dumps(reported))

    # --- execution --------------------------------------------------------------------------
    def _push(self, due: float, job: Any) -> None:
        self._n += 1
        heapq.heappush(self._jobs, (due, self._n, job))
        self._wake.notify()

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self.lock:
                now = time.monotonic()
                ready = []
                while self._jobs and self._jobs[0][0] <= now:
                    ready.append(heapq.heappop(self._jobs)[2])
                if not ready:
                    wait = min(0.5, self._jobs[0][0] - now) if self._jobs else 0.5
                    self._wake.wait(wait)
            for job in ready:
                self._execute(*job)
            if self.telemetry:
                self._report_due()

    def _execute(self, dev: Device, cid: str, name: str, params: dict, rtopic: str | None,
                 corr: bytes | None) -> None:
        with self.lock:
            error = self._apply(dev, name, params)
            dev.executions += 1
            body = {"id": cid, "status": "error" if error else "ok",
                    "result": {"error": error} if error else dict(dev.state),
                    "ts": int(time.time() * 1000)}
            dev.outcomes[cid] = body
            dev.pending.discard(cid)
            dev.last_report = 0.0  # report the new state at once
        self._answer(dev, body, rtopic, corr)

    def _apply(self, dev: Device, name: str, p: dict) -> str | None:
        """Carry out one command on the device's state; an error text when it cannot."""
        s = dev.state
        if dev.device_id in self.faulty:
            return "device fault: actuator does not respond to its driver"
        match dev.kind, name:
            case "pump", "start":
                if s["sump_level_m"] < 0.1:
                    return "sump dry: the pump's dry-run protection refused to start"
                s["running"], s["flow_m3_h"] = 1.0, float(p.get("flow_m3_h", 600))
            case "pump", "stop":
                s["running"], s["flow_m3_h"] = 0.0, 0.0
            case "sign", "show":
                s["showing"] = 1.0
            case "sign", "clear":
                s["showing"] = 0.0
            case "signal", "set_plan":
                plan = int(p.get("plan", 1))
                if plan not in PLANS:
                    return f"plan {plan} is not installed in this controller ({sorted(PLANS)})"
                s["plan"], s["cycle_s"] = float(plan), float(PLANS[plan])
                dev.until = None if plan == 1 else time.monotonic() + float(
                    p.get("duration_s", 1800))  # then back to plan 1
            case "siren", "sound":
                s["sounding"] = 1.0
                dev.until = time.monotonic() + float(p.get("duration_s", 120))
            case "siren", "stop":
                s["sounding"], dev.until = 0.0, None
            case _:
                return f"{dev.kind} does not know the method {name!r}"
        return None

    # --- telemetry and effects --------------------------------------------------------------
    def _report_due(self) -> None:
        now = time.monotonic()
        for dev in self.devices.values():
            self._run_out(dev, now)
            if now - dev.last_report < dev.interval_s:
                continue
            with self.lock:
                if dev.kind == "pump" and dev.last_report:
                    dt_h = (now - dev.last_report) / 3600
                    net = self.inflow_m3_h - dev.state["flow_m3_h"]
                    level = dev.state["sump_level_m"] + net * dt_h / SUMP_AREA_M2
                    dev.state["sump_level_m"] = round(min(max(level, 0.0), 6.0), 4)
                    if level <= 0.05 and dev.state["running"]:  # dry-run protection
                        dev.state["running"], dev.state["flow_m3_h"] = 0.0, 0.0
                dev.last_report = now
                body = {"ts": int(time.time() * 1000), "values": dict(dev.state)}
            self.session.publish(topics.telemetry(dev.device_id, self.prefix),
                                 orjson.dumps(body), qos=0)

    def _run_out(self, dev: Device, now: float) -> None:
        """A timed command past its ``duration_s``: the plan goes back to 1, the siren stops."""
        if dev.until is None or now < dev.until:
            return
        with self.lock:
            dev.until = None
            if dev.kind == "signal":
                dev.state["plan"], dev.state["cycle_s"] = 1.0, float(PLANS[1])
            elif dev.kind == "siren":
                dev.state["sounding"] = 0.0
            dev.last_report = 0.0  # report the change at once

    def effects(self) -> dict[str, dict[str, float]]:
        """What the actuators do to the city.

        ``drain_fall_m_h`` per zone (running pumps), ``speed_factor`` per segment (signal
        plans other than 1).
        """
        fall: dict[str, float] = {}
        speed: dict[str, float] = {}
        with self.lock:
            for d in self.devices.values():
                if d.kind == "pump" and d.zone_id and d.state["running"]:
                    fall[d.zone_id] = fall.get(d.zone_id, 0.0) + pump_fall_m_h(d.state)
                elif d.kind == "signal" and d.segment_id and d.state["plan"] != 1:
                    speed[d.segment_id] = plan_speed(d.state)
        return {"drain_fall_m_h": fall, "speed_factor": speed}

    def executions(self) -> dict[str, int]:
        """Commands executed per device (re-deliveries not counted)."""
        with self.lock:
            return {d.device_id: d.executions for d in self.devices.values()}

    def close(self, disconnect: bool = True) -> None:
        """Stop executing and reporting; the broker keeps the session (and queues commands)."""
        self._stop.set()
        with self.lock:
            self._wake.notify()
        self._thread.join(5)
        self.session.close(disconnect)
