"""What the simulated actuators do to the city, as the sensors read it.

In: the actuators (``device_id`` or ``sensor_id``, ``kind``, ``zone_id``, ``segment_id``: the
frame ``citypulse sim actuators`` deploys and writes as its registry file) and their states
as they report them (:meth:`Effects.observe`, at simulated times).  Out: :meth:`Effects.apply`,
a layer over the scenario's readings (:class:`World` stacks the two):

- running **pumps** lower their zone's drain levels: the pumped depth grows at
  ``DRAIN_DROP_PER_M3`` m/h per m3/h pumped (over simulated time) and the runoff refills it
  at ``REFILL_M_H`` once they stop; a drain never reads below ``DRAIN_FLOOR_M`` for it;
- a **signal plan** other than 1 changes its segment's speed by the plan's factor
  (``PLAN_SPEED``) and the flow with it, settling over ``SETTLE_S`` (one cycle or so);
- **signs** and **sirens** change nothing physical (their state is in their own telemetry).

:func:`pump_fall_m_h` and :func:`plan_speed` are the one source of these effects, also for
:meth:`device_sim.actuators.ActuatorSim.effects`.  :class:`ActuatorWatch` follows the
actuators' telemetry on the broker for a run's workers.
"""

from __future__ import annotations

import logging
import queue
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import paho.mqtt.client as mqtt
import polars as pl

from citypulse.settings import MqttEndpoint
from citypulse.wire import topics
from device_sim.fleet import KIND_CODE, Fleet

log = logging.getLogger(__name__)

PLAN_SPEED = {1: 1.0, 2: 1.15, 3: 1.3, 4: 0.8, 9: 0.2}  # segment speed factor under a plan
DRAIN_DROP_PER_M3 = 0.0005  # m/h drain level fall in the zone per m3/h pumped
REFILL_M_H = 0.2  # m/h: the runoff refills what the pumps drew down once they stop
MAX_DRAWDOWN_M = 5.0
DRAIN_FLOOR_M = 0.05  # pumps draw a drain down to its sump invert, not below
SETTLE_S = 120.0  # simulated seconds for traffic to settle into a new signal plan


def pump_fall_m_h(state: dict[str, float]) -> float:
    """Drain level fall (m/h) a pump in ``state`` causes in its zone (0 when stopped)."""
    if not state.get("running"):
        return 0.0
    return float(state.get("flow_m3_h", 0.0)) * DRAIN_DROP_PER_M3


def plan_speed(state: dict[str, float]) -> float:
    """Speed factor a signal controller in ``state`` gives its segment (1: none)."""
    return PLAN_SPEED.get(int(state.get("plan", 1)), 1.0)


def read_actuators(path: str | Path) -> pl.DataFrame:
    """The actuators file (CSV or Parquet; ``sensor_id`` or ``device_id``) as a frame."""
    p = Path(path)
    df = pl.read_parquet(p) if p.suffix == ".parquet" else pl.read_csv(
        p, infer_schema_length=None, schema_overrides={"zone_id": pl.String,
                                                       "segment_id": pl.String})
    if "device_id" not in df.columns:
        df = df.rename({"sensor_id": "device_id"})
    for c in ("zone_id", "segment_id"):
        if c not in df.columns:
            df = df.with_columns(pl.lit(None, pl.String).alias(c))
    return df.select("device_id", "kind", "zone_id", "segment_id")


class Effects:
    """Actuator states over simulated time, and their effect on readings (module doc)."""

    def __init__(self, actuators: pl.DataFrame | list[dict]) -> None:
        rows = actuators.to_dicts() if isinstance(actuators, pl.DataFrame) else actuators
        self.devices = {r["device_id"]: r for r in rows if r["kind"] in ("pump", "signal")}
        self.fall: dict[str, float] = {}  # pump id -> m/h it lowers its zone's drains by
        # zone -> (event times, drawdown at them, rate after them in m/s)
        self.zones: dict[str, tuple[list[float], list[float], list[float]]] = {}
        # segment -> (time of the last plan change, factor before, factor after)
        self.segments: dict[str, tuple[float, float, float]] = {}

    def watched(self) -> list[str]:
        """Devices whose state matters (pumps with a zone, signals with a segment)."""
        return [d for d, r in self.devices.items()
                if r.get("zone_id" if r["kind"] == "pump" else "segment_id")]

    def observe(self, device_id: str, state: dict[str, Any], t: float) -> None:
        """The device reported ``state`` at simulated time ``t`` (epoch seconds)."""
        dev = self.devices.get(device_id)
        if dev is None:
            return
        if dev["kind"] == "pump" and dev.get("zone_id"):
            zone = dev["zone_id"]
            self.fall[device_id] = pump_fall_m_h(state)
            fall = sum(f for d, f in self.fall.items() if self.devices[d]["zone_id"] == zone)
            rate = (fall if fall > 0 else -REFILL_M_H) / 3600.0
            ts, ds, rs = self.zones.setdefault(zone, ([], [], []))
            if rs and rs[-1] == rate:
                return
            d = float(self._drawdown(zone, np.array([t]))[0]) if ts else 0.0
            ts.append(t)
            ds.append(d)
            rs.append(rate)
        elif dev["kind"] == "signal" and dev.get("segment_id"):
            seg = dev["segment_id"]
            new = plan_speed(state)
            if new != self.segments.get(seg, (t, 1.0, 1.0))[2]:
                now = float(self._factor(seg, np.array([t]))[0]) if seg in self.segments \
                    else 1.0
                self.segments[seg] = (t, now, new)

    def _drawdown(self, zone: str, t: np.ndarray) -> np.ndarray:
        """Metres the zone's pumps have drawn its drains down by at times ``t``."""
        ts, ds, rs = (np.asarray(x, float) for x in self.zones[zone])
        j = np.searchsorted(ts, t, side="right") - 1
        ok = j >= 0
        jj = np.maximum(j, 0)
        d = np.clip(ds[jj] + rs[jj] * (t - ts[jj]), 0.0, MAX_DRAWDOWN_M)
        return np.where(ok, d, 0.0)

    def _factor(self, seg: str, t: np.ndarray) -> np.ndarray:
        t0, before, after = self.segments[seg]
        w = np.clip((t - t0) / SETTLE_S, 0.0, 1.0)
        return np.where(t < t0, before, before + (after - before) * w)

    def apply(self, fleet: Fleet, idx: np.ndarray, t: np.ndarray,
              v: dict[str, np.ndarray]) -> np.ndarray:
        """Change ``v`` in place for readings (idx, t); silences none (an all-False mask)."""
        kinds = fleet.kind[idx]
        if self.zones:
            drains = np.flatnonzero((kinds == KIND_CODE["water"]) & (fleet.role[idx] == "drain"))
            zone = fleet.zone_id[idx[drains]]
            level = v["level_m"]
            for z in self.zones:
                rows = drains[zone == z]
                if len(rows):
                    lv = level[rows]
                    d = self._drawdown(z, t[rows])
                    level[rows] = np.round(np.maximum(lv - d, np.minimum(lv, DRAIN_FLOOR_M)), 3)
        if self.segments:
            roads = np.flatnonzero(kinds == KIND_CODE["traffic"])
            seg = fleet.segment_id[idx[roads]]
            for s in self.segments:
                rows = roads[seg == s]
                if len(rows):
                    f = self._factor(s, t[rows])
                    v["speed_kmh"][rows] = np.round(np.clip(v["speed_kmh"][rows] * f, 2, 140), 1)
                    v["vehicle_count"][rows] = np.minimum(
                        np.floor(v["vehicle_count"][rows] * (0.5 + 0.5 * f)), 1000)
        return np.zeros(len(idx), bool)


class World:
    """A scenario's incidents, then the actuators' effects: what the behaviour model applies."""

    def __init__(self, scenario: Any, effects: Effects) -> None:
        self.scenario = scenario
        self.effects = effects

    def alarm_candidates(self, fleet: Fleet) -> np.ndarray:
        """The scenario's alarm candidates (the effects trip no alarm on purpose)."""
        if self.scenario is None:
            return np.zeros(0, np.int64)
        return self.scenario.alarm_candidates(fleet)

    def apply(self, fleet: Fleet, idx: np.ndarray, t: np.ndarray,
              v: dict[str, np.ndarray]) -> np.ndarray:
        """Incidents, then effects; the silenced readings."""
        silent = np.zeros(len(idx), bool) if self.scenario is None else \
            self.scenario.apply(fleet, idx, t, v)
        return silent | self.effects.apply(fleet, idx, t, v)


class ActuatorWatch:
    """Follows the watched actuators' telemetry on the broker (a network thread).

    :meth:`take` returns the ``(device_id, state, wall)`` reports received since the last
    call (``wall``: ``time.monotonic()`` on arrival).
    """

    def __init__(self, url: str, prefix: str, device_ids: list[str], client_id: str, *,
                 ca_file: Path | None = None) -> None:
        self.prefix = prefix
        self.topics = [topics.telemetry(d, prefix) for d in device_ids]
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.ready = False
        ep = MqttEndpoint(url)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                        clean_session=True, protocol=mqtt.MQTTv311)
        if ep.username:
            c.username_pw_set(ep.username, ep.password)
        if ep.tls:
            c.tls_set(ca_certs=str(ca_file) if ca_file else None)
        c.reconnect_delay_set(0.2, 5)
        c.on_connect = self._connected
        c.on_subscribe = self._subscribed
        c.on_message = self._message
        self.client = c
        c.connect_async(ep.host, ep.port, keepalive=30)
        c.loop_start()

    def _connected(self, client: mqtt.Client, *_a: Any) -> None:
        if self.topics:
            client.subscribe([(t, 0) for t in self.topics])

    def _subscribed(self, _c: Any, _u: Any, _mid: Any, codes: Any, _p: Any = None) -> None:
        if any(getattr(c, "is_failure", False) for c in codes):
            log.warning("the broker refused some actuator telemetry subscriptions "
                        "(the simulator's account needs read access to telemetry)")
        self.ready = True

    def _message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            body = orjson.loads(msg.payload)
            state = body["values"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return  # not an actuator report: nothing to follow
        self.inbox.put((msg.topic.rsplit("/", 1)[-1], state, time.monotonic()))

    def take(self) -> list[tuple[str, dict, float]]:
        """Reports received since the last call, in arrival order."""
        out = []
        while True:
            try:
                out.append(self.inbox.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()
