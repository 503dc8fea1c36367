"""What every incident type shares: its YAML fields, its binding to entities, the registry.

An incident type is one class (a pydantic model of its YAML fields, ``type`` its literal
name) registered with :func:`register`; it says how it binds to a deployment
(:meth:`Incident.bind` -> :class:`Bound`), which sensors it touches (:meth:`members`), how it
changes readings (:meth:`change`), which alarm-capable sensors it may trip
(:meth:`alarm_mask`) and which sensors an alert about it names (:meth:`truth_sensors`).
The built-ins live one per module in this package (``traffic``, ``crowd``, ``flood``,
``fire``, ``gas``, ``gateway``); an extension is one more module registered the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, ClassVar, TypeVar

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator

from device_sim.city import meters
from device_sim.fleet import Fleet

_DUR = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?\s*$")

INCIDENTS: dict[str, type[Incident]] = {}


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
T = TypeVar("T", bound=type)


def register(cls: T) -> T:
    """Class decorator: make ``cls`` an incident type (its ``type`` literal is its name)."""
    name = cls.model_fields["type"].annotation.__args__[0]
    INCIDENTS[name] = cls
    return cls


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


class Incident(BaseModel):
    """The fields every incident has, and the hooks an incident type fills in."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    entity_kind: ClassVar[str] = "sensor"

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

    # --- hooks ------------------------------------------------------------------------------
    def bind(self, dep: pl.DataFrame, start: float, end: float, city: Any, seed: int) -> Bound:
        """The incident bound to concrete entities of the deployment ``dep``."""
        raise NotImplementedError

    def members(self, b: Bound, fleet: Fleet) -> dict[str, np.ndarray]:
        """Masks over the fleet of the sensors it touches (computed once per fleet)."""
        return {"on": np.isin(fleet.sensor_id, list(b.sensors))}

    def alarm_mask(self, b: Bound, fleet: Fleet) -> np.ndarray | None:
        """Fleet mask of the alarm-capable sensors it may trip (None: none)."""
        return None

    def truth_sensors(self, b: Bound, dep: pl.DataFrame | None) -> set[str]:
        """The sensors the alert about it names (ground truth)."""
        return set(b.sensors)

    def gateways_down(self, b: Bound, gateway_ids: np.ndarray, t: float) -> np.ndarray | None:
        """Whether each gateway is dark at ``t`` because of it (None: it darkens none)."""
        return None

    def apply(self, b: Bound, member: dict[str, np.ndarray], fleet: Fleet, idx: np.ndarray,
              t: np.ndarray, v: dict[str, np.ndarray]) -> np.ndarray | None:
        """Change ``v`` in place for readings (idx, t); the silenced ones (None: none).

        Skips the work while the incident is not live.
        """
        tb = b.fold(t)
        inten = b.intensity(tb)
        live = inten > 0
        if not live.any():
            return None
        return self.change(b, member, fleet, idx, tb, inten, live, v)

    def change(self, b: Bound, member: dict[str, np.ndarray], fleet: Fleet, idx: np.ndarray,
               tb: np.ndarray, inten: np.ndarray, live: np.ndarray,
               v: dict[str, np.ndarray]) -> np.ndarray | None:
        """The change itself, at folded times ``tb`` with intensity ``inten`` (> 0: live)."""
        raise NotImplementedError


def nearest(df: pl.DataFrame, near: tuple[float, float] | None, seed: int) -> dict | None:
    """The row of ``df`` nearest to ``near`` (or a seeded pick when no place is given)."""
    if df.height == 0:
        return None
    if near is None:
        df = df.sort("sensor_id")
        return df.row(int(seed) % df.height, named=True)
    d = meters(df["lon"].to_numpy() - near[0], df["lat"].to_numpy() - near[1])
    return df.row(int(np.argmin(d)), named=True)


def pick(df: pl.DataFrame, near: tuple[float, float] | None, seed: int, column: str,
         missing: str) -> Any:
    """``column`` of the row of ``df`` nearest to ``near``; :class:`ScenarioError` ``missing``."""
    row = nearest(df, near, seed)
    if row is None:
        raise ScenarioError(missing)
    return row[column]


def sensors_of(dep: pl.DataFrame | None, b: Bound, column: str, ids: frozenset,
               kind: str) -> set[str]:
    """Sensors of ``kind`` whose ``column`` is in ``ids`` (the bound's own without ``dep``)."""
    if dep is None:
        return set(b.sensors)
    return set(dep.filter(pl.col(column).is_in(list(ids)) &
                          (pl.col("kind") == kind))["sensor_id"].to_list())


def within(df: pl.DataFrame, centre: tuple[float, float], radius: float) -> frozenset:
    """Sensor ids of ``df`` within ``radius`` metres of ``centre``."""
    d = meters(df["lon"].to_numpy() - centre[0], df["lat"].to_numpy() - centre[1])
    return frozenset(df.filter(pl.Series(d <= radius))["sensor_id"].to_list())


def dark(b: Bound, t: np.ndarray) -> np.ndarray:
    """Times (epoch seconds) at which an outage-like incident is on (no ramp)."""
    tb = b.fold(t)
    return (tb >= b.start) & (tb < b.end)
