"""Incident scenarios: YAML files that inject trouble at a place and time, and the ground truth.

In: a YAML file (see ``device_sim/scenarios/*.yaml``)::

    name: morning-accident
    start: 2026-11-23T08:00:00+08:00      # simulated start (optional; default: run start)
    incidents:
      - type: traffic_accident             # traffic_accident | crowd_surge | flash_flood |
        at: 5m                             # building_fire | gas_leak | gateway_outage
        duration: 20m
        near: [121.93, 30.88]              # or the entity id (segment_id, zone_id, ...)

Out: :func:`load` gives a validated, frozen :class:`Scenario` (a bad file raises
:class:`ScenarioError` naming the line and field); :meth:`Scenario.resolve` binds it to a
deployment (concrete segments, zones, buildings, sensors, gateways) as a :class:`Resolved`,
whose ``apply`` the behaviour model calls; :func:`expected_alerts` lists what analytics should
raise: (incident type, entity kind, entity ids, start time).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from device_sim.behaviour import FIRE_ALARM_SMOKE_PCT, KIND_CODE, Fleet
from device_sim.city import meters

_DUR = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?\s*$")


class ScenarioError(ValueError):
    """A scenario file is wrong; the message names the file, line and field."""


def parse_duration(v: Any) -> float:
    """Seconds from a number or a string like ``90``, ``5m``, ``1h30m``, ``45s``."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, timedelta):
        return v.total_seconds()
    if isinstance(v, str):
        m = _DUR.match(v)
        if m and any(m.groups()):
            h, mi, s = (float(x) if x else 0.0 for x in m.groups())
            return h * 3600 + mi * 60 + s
        try:
            return float(v)
        except ValueError:
            pass
    raise ValueError(f"a duration like 90, '45s', '5m' or '1h30m', got {v!r}")


Seconds = Annotated[float, Field(ge=0)]


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    at: Seconds = Field(description="start, seconds (or '5m') after the scenario start")
    duration: Seconds = Field(600, description="how long the incident lasts")
    ramp: Seconds = Field(60, description="seconds to build up (and to fade after the end)")
    onset: Seconds | None = Field(None, description=(
        "sharp onset: intensity (1 - exp(-t / onset)) / 0.95 from the start (1 at 3 x onset) "
        "instead of the linear ramp; the fade after the end still uses the ramp"))
    near: tuple[float, float] | None = Field(None, description="[lon, lat] of the place")

    @field_validator("at", "duration", "ramp", "onset", mode="before")
    @classmethod
    def _dur(cls, v: Any) -> float | None:
        return None if v is None else parse_duration(v)


class TrafficAccident(_Base):
    """A segment's speed collapses within seconds; a queue builds (over ``ramp``) upstream."""

    type: Literal["traffic_accident"]
    onset: Seconds | None = 2.0
    segment_id: str | None = None
    speed_kmh: float = Field(4.0, ge=0, le=30)
    queue_hops: int = Field(2, ge=0, le=6)


class CrowdSurge(_Base):
    """A zone (default: a lakeside zone) fills far beyond its usual crowd."""

    type: Literal["crowd_surge"]
    zone_id: str | None = None
    zone_type: str = "lakeside"
    factor: float = Field(6.0, gt=1, le=50)


class FlashFlood(_Base):
    """A cloudburst around a place: rain gauges, drains and the lake level rise.

    The rain arrives with the storm cell's leading edge (``onset``: at full intensity within
    seconds); drains fill over the ``ramp`` as the runoff reaches them; the lake rises over
    the whole ``duration`` and drains away slowly afterwards.
    """

    type: Literal["flash_flood"]
    onset: Seconds | None = 6.0
    radius_m: float = Field(1500, gt=0, le=20_000)
    rain_mm_h: float = Field(90, gt=0, le=400)
    drain_rise_m: float = Field(1.6, gt=0, le=20)
    lake_rise_m: float = Field(0.5, ge=0, le=5)


class BuildingFire(_Base):
    """Smoke, heat and alarms in one building (smoke rises fast, then heat)."""

    type: Literal["building_fire"]
    onset: Seconds | None = 20.0
    building_id: str | None = None
    smoke_pct: float = Field(45, gt=0, le=100)
    temperature_c: float = Field(320, gt=0, le=1100)


class GasLeak(_Base):
    """Methane (and some CO) spreading from a point (a pipe rupture: sharp onset)."""

    type: Literal["gas_leak"]
    onset: Seconds | None = 8.0
    radius_m: float = Field(250, gt=0, le=5000)
    ch4_lel_pct: float = Field(60, gt=0, le=100)


class GatewayOutage(_Base):
    """A gateway goes dark: none of its sensors' readings arrive."""

    type: Literal["gateway_outage"]
    gateway_id: str | None = None


Incident = Annotated[TrafficAccident | CrowdSurge | FlashFlood | BuildingFire | GasLeak
                     | GatewayOutage, Field(discriminator="type")]


class Scenario(BaseModel):
    """A validated scenario file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    start: datetime | None = None
    repeat: Seconds | None = Field(None, description="incidents recur with this period")
    incidents: tuple[Incident, ...] = ()

    @field_validator("repeat", mode="before")
    @classmethod
    def _rep(cls, v: Any) -> float | None:
        return None if v is None else parse_duration(v)

    @field_validator("start")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("give the start with a time zone, e.g. 2026-11-23T08:00:00+08:00")
        return v

    def resolve(self, deployment: pl.DataFrame, start: datetime | None = None,
                city: Any = None, seed: int = 0) -> Resolved:
        """Bind every incident to concrete entities of ``deployment`` (see module docs)."""
        t0 = (start or self.start or datetime.now(UTC)).timestamp()
        return Resolved(self, tuple(replace(_resolve(i, deployment, t0, city, seed),
                                            repeat=self.repeat) for i in self.incidents), t0)


# --- loading ----------------------------------------------------------------------------------

def _line(node: yaml.Node | None, loc: tuple) -> int | None:
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if k.value == key), None)
            if nxt is None:
                continue  # a discriminator tag such as 'gas_leak'
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and \
                key < len(node.value):
            node = node.value[key]
        else:
            continue  # discriminator tags such as 'traffic_accident'
        line = node.start_mark.line + 1
    return line


def loads(text: str, source: str = "<scenario>") -> Scenario:
    """Validate scenario YAML text; :class:`ScenarioError` names line and field of each fault."""
    try:
        doc = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{source}: not YAML: {exc}") from None
    try:
        return Scenario.model_validate(doc)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            field = ".".join(str(x) for x in loc) or "(file)"
            lines.append(f"{source} line {_line(root, loc)}: {field}: {err['msg']}")
        raise ScenarioError("invalid scenario:\n  " + "\n  ".join(lines)) from None


def load(path: str | Path) -> Scenario:
    """Read and validate a scenario file."""
    path = Path(path)
    return loads(path.read_text(), str(path))


# --- resolution -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Bound:
    """One incident bound to entities: what it touches, from when to when."""

    incident: Any
    start: float  # epoch seconds
    end: float
    entity_kind: str
    entity_ids: tuple[str, ...]
    segments: frozenset = frozenset()  # accident: the segment itself
    queue: frozenset = frozenset()  # accident: upstream segments
    zones: frozenset = frozenset()
    sensors: frozenset = frozenset()  # sensor ids touched (points within a radius)
    centre: tuple[float, float] | None = None
    repeat: float | None = None  # the scenario recurs with this period (seconds)

    def fold(self, t: np.ndarray) -> np.ndarray:
        """Time folded into the first cycle of a repeating scenario (else ``t``)."""
        if not self.repeat:
            return t
        return np.where(t >= self.start, self.start + (t - self.start) % self.repeat, t)

    @property
    def type(self) -> str:
        """The incident type."""
        return self.incident.type

    def intensity(self, t: np.ndarray, linear: bool = False) -> np.ndarray:
        """0 before the start, rising to 1, back to 0 after the end.

        The rise follows the ``onset`` curve if the incident has one (unless ``linear``),
        else the linear ramp; the fade after the end is linear over the ramp.
        """
        r = max(self.incident.ramp, 1e-3)
        onset = None if linear else self.incident.onset
        if onset:
            up = np.clip((1 - np.exp(-np.maximum(t - self.start, 0) / onset)) / 0.95, 0, 1)
        else:
            up = np.clip((t - self.start) / r, 0, 1)
        down = np.clip(1 - (t - self.end) / r, 0, 1)
        return np.where(t < self.start, 0.0, np.minimum(up, down))


def _nearest(df: pl.DataFrame, near: tuple[float, float] | None, seed: int) -> dict | None:
    if df.height == 0:
        return None
    if near is None:
        df = df.sort("sensor_id")
        return df.row(int(seed) % df.height, named=True)
    d = meters(df["lon"].to_numpy() - near[0], df["lat"].to_numpy() - near[1])
    return df.row(int(np.argmin(d)), named=True)


def _upstream(city: Any, segment_id: str, hops: int) -> set[str]:
    if city is None or hops == 0:
        return set()
    g = city.graph
    edge = next(((u, v) for u, v, s in g.edges(data="segment_id") if s == segment_id), None)
    if edge is None:
        return set()
    out: set[str] = set()
    frontier = {edge[0]}
    for _ in range(hops):
        nxt = set()
        for node in frontier:
            for u, v, s in g.in_edges(node, data="segment_id"):
                if v == node and u != edge[1] and s != segment_id:
                    out.add(s)
                    nxt.add(u)
        frontier = nxt
    return out


def _within(df: pl.DataFrame, centre: tuple[float, float], radius: float) -> frozenset:
    d = meters(df["lon"].to_numpy() - centre[0], df["lat"].to_numpy() - centre[1])
    return frozenset(df.filter(pl.Series(d <= radius))["sensor_id"].to_list())


def _resolve(inc: Any, dep: pl.DataFrame, t0: float, city: Any, seed: int) -> Bound:
    start, end = t0 + inc.at, t0 + inc.at + inc.duration
    kind = pl.col("kind")
    if inc.type == "traffic_accident":
        seg = inc.segment_id
        if seg is None:
            row = _nearest(dep.filter(kind == "traffic"), inc.near, seed)
            if row is None:
                raise ScenarioError("traffic_accident: the deployment has no traffic sensors")
            seg = row["segment_id"]
        if city is None:
            from device_sim.city import city_of
            city = city_of(dep)
        queue = _upstream(city, seg, inc.queue_hops)
        return Bound(inc, start, end, "segment", (seg,), segments=frozenset([seg]),
                     queue=frozenset(queue))
    if inc.type == "crowd_surge":
        zone = inc.zone_id
        if zone is None:
            cand = dep.filter((kind == "people") & pl.col("zone_type").str.contains(inc.zone_type))
            row = _nearest(cand if cand.height else dep.filter(kind == "people"), inc.near, seed)
            if row is None:
                raise ScenarioError("crowd_surge: the deployment has no people counters")
            zone = row["zone_id"]
        return Bound(inc, start, end, "zone", (zone,), zones=frozenset([zone]))
    if inc.type == "flash_flood":
        water = dep.filter(kind == "water")
        centre = inc.near or ((float(water["lon"].mean()), float(water["lat"].mean()))
                              if water.height else (0.0, 0.0))
        local = water.filter(pl.col("role").is_in(["drain", "rain"]))
        hit = _within(local, centre, inc.radius_m)
        lake = frozenset(water.filter(pl.col("role") == "lake_level")["sensor_id"].to_list()) \
            if inc.lake_rise_m > 0 else frozenset()
        zones = dep.filter(pl.col("sensor_id").is_in(list(hit)))["zone_id"].unique().sort()
        return Bound(inc, start, end, "zone", tuple(zones.to_list()), sensors=hit | lake,
                     zones=frozenset(zones.to_list()), centre=centre)
    if inc.type == "building_fire":
        b = inc.building_id
        if b is None:
            row = _nearest(dep.filter(kind == "fire"), inc.near, seed)
            if row is None:
                raise ScenarioError("building_fire: the deployment has no fire detectors")
            b = row["building_id"]
        sensors = frozenset(dep.filter(pl.col("building_id") == b)["sensor_id"].to_list())
        return Bound(inc, start, end, "building", (b,), sensors=sensors)
    if inc.type == "gas_leak":
        gas = dep.filter(kind == "gas")
        row = _nearest(gas, inc.near, seed)
        if row is None:
            raise ScenarioError("gas_leak: the deployment has no gas detectors")
        centre = (row["lon"], row["lat"])  # snapped to the nearest detector
        hit = _within(gas, centre, inc.radius_m)
        return Bound(inc, start, end, "sensor", tuple(sorted(hit)), sensors=hit,
                     zones=frozenset([row["zone_id"]]), centre=centre)
    if inc.type == "gateway_outage":
        gw = inc.gateway_id
        if gw is None:
            row = _nearest(dep.filter(pl.col("gateway_id").is_not_null()), inc.near, seed)
            if row is None:
                raise ScenarioError("gateway_outage: the deployment has no gateways")
            gw = row["gateway_id"]
        sensors = frozenset(dep.filter(pl.col("gateway_id") == gw)["sensor_id"].to_list())
        return Bound(inc, start, end, "gateway", (gw,), sensors=sensors)
    raise ScenarioError(f"unknown incident type {inc.type}")  # unreachable: pydantic checks


@dataclass(frozen=True)
class Resolved:
    """A scenario bound to a deployment; the behaviour model calls :meth:`apply`."""

    scenario: Scenario
    incidents: tuple[Bound, ...]
    start: float
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def alarm_candidates(self, fleet: Fleet) -> np.ndarray:
        """Fleet positions of the alarm-capable sensors an incident may trip (event reports)."""
        hit = self._cache.get("alarm")
        if hit is not None and hit[0] is fleet:
            return hit[1]
        sensors: set[str] = set()
        segments: set[str] = set()
        zones: set[str] = set()
        water: set[str] = set()
        for b in self.incidents:
            if b.type in ("building_fire", "gas_leak"):
                sensors |= b.sensors
            elif b.type == "flash_flood":
                water |= b.sensors  # rain gauges and drains: heavy-rain / high-level alarms
            elif b.type == "traffic_accident":
                segments |= b.segments | b.queue
            elif b.type == "crowd_surge":
                zones |= b.zones  # the zone's people counters: inflow alarm
        mask = np.isin(fleet.sensor_id, list(sensors)) & np.isin(
            fleet.kind, [KIND_CODE["fire"], KIND_CODE["gas"]])
        if segments:
            mask |= (fleet.kind == KIND_CODE["traffic"]) & np.isin(fleet.segment_id,
                                                                    list(segments))
        if zones:
            mask |= (fleet.kind == KIND_CODE["people"]) & np.isin(fleet.zone_id, list(zones))
        if water:
            mask |= (fleet.kind == KIND_CODE["water"]) & np.isin(fleet.role, ["rain", "drain"]) \
                & np.isin(fleet.sensor_id, list(water))
        pos = np.flatnonzero(mask)
        self._cache["alarm"] = (fleet, pos)
        return pos

    def gateways_down(self, gateway_ids: np.ndarray, t: float) -> np.ndarray:
        """Whether each gateway is dark (in a gateway outage) at time ``t`` (epoch seconds)."""
        down = np.zeros(len(gateway_ids), bool)
        for b in self.incidents:
            if b.type == "gateway_outage":
                down |= _dark(b, np.full(len(gateway_ids), float(t))) & (
                    gateway_ids == b.entity_ids[0])
        return down

    def affected(self) -> dict[str, set[str]]:
        """Incident type -> ids of the sensors and entities it touches (for tests)."""
        out: dict[str, set[str]] = {}
        for b in self.incidents:
            out.setdefault(b.type, set()).update(b.sensors | b.segments | b.queue | b.zones)
        return out

    def _members(self, fleet: Fleet) -> list[dict[str, np.ndarray]]:
        """Per incident, masks over the fleet of the sensors it touches.

        Computed once per fleet: membership tests on string ids were the slow part of
        applying a scenario (80% of the alert bench's time at 200,000 sensors).
        """
        hit = self._cache.get("members")
        if hit is not None and hit[0] is fleet:
            return hit[1]
        out: list[dict[str, np.ndarray]] = []
        for b in self.incidents:
            m: dict[str, np.ndarray] = {}
            if b.type == "traffic_accident":
                m["on"] = np.isin(fleet.segment_id, list(b.segments))
                m["queue"] = np.isin(fleet.segment_id, list(b.queue))
            elif b.type == "crowd_surge":
                m["on"] = np.isin(fleet.zone_id, list(b.zones))
            elif b.type in ("flash_flood", "gas_leak"):
                m["on"] = np.isin(fleet.sensor_id, list(b.sensors))
            elif b.type == "building_fire":
                m["on"] = fleet.building_id == b.entity_ids[0]
            elif b.type == "gateway_outage":
                m["on"] = fleet.gateway_id == b.entity_ids[0]
            out.append(m)
        self._cache["members"] = (fleet, out)
        return out

    def apply(self, fleet: Fleet, idx: np.ndarray, t: np.ndarray,
              v: dict[str, np.ndarray]) -> np.ndarray:
        """Change ``v`` in place for readings (idx, t); returns the mask of silenced ones."""
        silent = np.zeros(len(idx), bool)
        kinds = fleet.kind[idx]
        for b, member in zip(self.incidents, self._members(fleet), strict=True):
            tb = b.fold(t)
            inten = b.intensity(tb)
            live = inten > 0
            if b.type == "gateway_outage":
                live = _dark(b, t)
            if not live.any():
                if b.type != "flash_flood":
                    continue
            if b.type == "traffic_accident":
                tr = kinds == KIND_CODE["traffic"]
                on = live & tr & member["on"][idx]
                q = live & tr & member["queue"][idx]
                # the blocked segment collapses at the onset; the queue builds over the ramp
                i = np.where(q, b.intensity(tb, linear=True), inten)
                sp = v["speed_kmh"]
                v["speed_kmh"] = np.where(on, np.round(sp * (1 - i) + i * b.incident.speed_kmh, 1),
                                          np.where(q, np.round(sp * (1 - 0.75 * i), 1), sp))
                c = v["vehicle_count"]
                v["vehicle_count"] = np.where(on, np.floor(c * (1 - 0.85 * i)),
                                              np.where(q, np.floor(c * (1 - 0.4 * i)), c))
                o = v["occupancy_pct"]
                v["occupancy_pct"] = np.where(on | q, np.round(o + (85 - o) * i * np.where(
                    on, 1.0, 0.8), 1), o)
            elif b.type == "crowd_surge":
                on = live & (kinds == KIND_CODE["people"]) & member["on"][idx]
                # The count grows by (f(t) - 1) * count over the ramp; those extra people
                # entered.  The inflow is the count's derivative: it steps up at the onset
                # (the derivative of a ramp is a step) and falls back when the count stops
                # growing, so entries in the interval = the normal entries + the arrivals
                # base_count * (f(t) - f(t - per)).  Inflow leads; density lags.  Exits are
                # unchanged (the fade after the end is the crowd dispersing slowly).
                grow = b.incident.factor - 1
                f = 1 + grow * inten
                f_before = 1 + grow * b.intensity(tb - fleet.period[idx])
                base = v["people_count"]
                arrived = np.round(np.maximum(base * (f - f_before), 0))
                v["people_count"] = np.where(on, np.minimum(np.round(base * f), 200_000), base)
                v["entries"] = np.where(on, np.minimum(v["entries"] + arrived, 20_000),
                                        v["entries"])
            elif b.type == "flash_flood":
                on = (kinds == KIND_CODE["water"]) & member["on"][idx]
                role = fleet.role[idx]
                inc = b.incident
                rain = on & live & (role == "rain")
                drain = on & (role == "drain")
                runoff = b.intensity(tb, linear=True)  # drains fill over the ramp
                # the lake fills while it rains and drains away slowly (6 h) afterwards
                fill = np.clip((tb - b.start) / max(inc.duration, 1), 0, 1)
                fade = np.clip(1 - (tb - b.end) / (6 * 3600), 0, 1)
                lake_i = np.where(tb < b.start, 0.0, np.where(tb <= b.end, fill, fade))
                lake = on & (role == "lake_level") & (lake_i > 0)
                v["rain_mm_h"] = np.where(rain, np.round(np.maximum(
                    v["rain_mm_h"], inc.rain_mm_h * inten), 2), v["rain_mm_h"])
                v["level_m"] = np.where(drain, np.round(v["level_m"] + inc.drain_rise_m * runoff, 3),
                                        np.where(lake, np.round(
                                            v["level_m"] + inc.lake_rise_m * lake_i, 3),
                                            v["level_m"]))
            elif b.type == "building_fire":
                on = live & (kinds == KIND_CODE["fire"]) & member["on"][idx]
                inc = b.incident
                v["smoke_pct"] = np.where(on, np.round(np.maximum(
                    v["smoke_pct"], inc.smoke_pct * inten), 3), v["smoke_pct"])
                temp = v["temperature_c"]
                v["temperature_c"] = np.where(on, np.round(temp + (inc.temperature_c - temp)
                                                           * inten, 2), temp)
                # detectors alarm on smoke obscuration (or a heat-detector level)
                v["alarm"] = np.where(on & ((v["smoke_pct"] >= FIRE_ALARM_SMOKE_PCT)
                                            | (v["temperature_c"] >= 57)), 1.0, v["alarm"])
            elif b.type == "gas_leak":
                on = live & (kinds == KIND_CODE["gas"]) & member["on"][idx]
                cx, cy = b.centre
                d = meters(fleet.lon[idx] - cx, fleet.lat[idx] - cy)
                peak = b.incident.ch4_lel_pct * inten * np.exp(-3 * d / b.incident.radius_m)
                v["ch4_lel_pct"] = np.where(on, np.round(np.clip(np.maximum(
                    v["ch4_lel_pct"], peak), 0, 100), 2), v["ch4_lel_pct"])
                v["co_ppm"] = np.where(on, np.round(np.clip(v["co_ppm"] + peak * 0.5, 0, 5000),
                                                    2), v["co_ppm"])
            elif b.type == "gateway_outage":
                silent |= live & member["on"][idx]
        return silent


def _dark(b: Bound, t: np.ndarray) -> np.ndarray:
    """Times (epoch seconds) at which a gateway outage's gateway is dark."""
    tb = b.fold(t)
    return (tb >= b.start) & (tb < b.end)


# --- ground truth -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ExpectedAlert:
    """What analytics should raise for one incident."""

    incident_type: str
    entity_kind: str  # segment, zone, building, sensor, gateway
    entity_ids: tuple[str, ...]
    start: datetime
    end: datetime
    sensor_ids: tuple[str, ...] = ()


def expected_alerts(scenario: Scenario | Resolved, deployment: pl.DataFrame | None = None,
                    start: datetime | None = None, city: Any = None,
                    seed: int = 0, until: datetime | None = None) -> list[ExpectedAlert]:
    """The alerts a scenario should cause, in start order (the alert tests' ground truth).

    A repeating scenario lists its first cycle, or every cycle starting before ``until``.
    """
    res = scenario if isinstance(scenario, Resolved) else scenario.resolve(
        deployment, start=start, city=city, seed=seed)
    out = []
    for b in res.incidents:
        sensors = set(b.sensors)
        if deployment is not None and b.type == "traffic_accident":
            sensors = set(deployment.filter(pl.col("segment_id").is_in(list(b.segments)) &
                                            (pl.col("kind") == "traffic"))["sensor_id"].to_list())
        if deployment is not None and b.type == "crowd_surge":
            sensors = set(deployment.filter(pl.col("zone_id").is_in(list(b.zones)) &
                                            (pl.col("kind") == "people"))["sensor_id"].to_list())
        shift = 0.0
        while True:
            out.append(ExpectedAlert(b.type, b.entity_kind, b.entity_ids,
                                     datetime.fromtimestamp(b.start + shift, UTC),
                                     datetime.fromtimestamp(b.end + shift, UTC),
                                     tuple(sorted(sensors))))
            shift += b.repeat or 0.0
            if not b.repeat or until is None or b.start + shift >= until.timestamp():
                break
    return sorted(out, key=lambda a: (a.start, a.incident_type))
