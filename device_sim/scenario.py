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

Each incident type is a class in :mod:`device_sim.incidents` (one module per type,
registered by name); this module loads, binds and applies them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from device_sim.fleet import Fleet
from device_sim.incidents import INCIDENTS, AnyIncident, Bound, ScenarioError, parse_duration
from device_sim.incidents.base import Seconds

__all__ = ["INCIDENTS", "Bound", "ExpectedAlert", "Resolved", "Scenario", "ScenarioError",
           "expected_alerts", "load", "loads", "parse_duration"]


class Scenario(BaseModel):
    """A validated scenario file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    start: datetime | None = None
    repeat: Seconds | None = Field(None, description="incidents recur with this period")
    incidents: tuple[AnyIncident, ...] = ()

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
        bound = (i.bind(deployment, t0 + i.at, t0 + i.at + i.duration, city, seed)
                 for i in self.incidents)
        return Resolved(self, tuple(replace(b, repeat=self.repeat) for b in bound), t0)


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
        mask = np.zeros(len(fleet), bool)
        for b in self.incidents:
            m = b.incident.alarm_mask(b, fleet)
            if m is not None:
                mask |= m
        pos = np.flatnonzero(mask)
        self._cache["alarm"] = (fleet, pos)
        return pos

    def gateways_down(self, gateway_ids: np.ndarray, t: float) -> np.ndarray:
        """Whether each gateway is dark (in a gateway outage) at time ``t`` (epoch seconds)."""
        down = np.zeros(len(gateway_ids), bool)
        for b in self.incidents:
            m = b.incident.gateways_down(b, gateway_ids, t)
            if m is not None:
                down |= m
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
        out = [b.incident.members(b, fleet) for b in self.incidents]
        self._cache["members"] = (fleet, out)
        return out

    def apply(self, fleet: Fleet, idx: np.ndarray, t: np.ndarray,
              v: dict[str, np.ndarray]) -> np.ndarray:
        """Change ``v`` in place for readings (idx, t); returns the mask of silenced ones."""
        silent = np.zeros(len(idx), bool)
        for b, member in zip(self.incidents, self._members(fleet), strict=True):
            s = b.incident.apply(b, member, fleet, idx, t, v)
            if s is not None:
                silent |= s
        return silent


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
        sensors = b.incident.truth_sensors(b, deployment)
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
