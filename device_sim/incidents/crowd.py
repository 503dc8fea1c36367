"""Crowd surge: a zone (default: a lakeside zone) fills far beyond its usual crowd."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import Field

from device_sim.fleet import KIND_CODE, Fleet
from device_sim.incidents.base import Bound, Incident, pick, register, sensors_of


@register
class CrowdSurge(Incident):
    """A zone (default: a lakeside zone) fills far beyond its usual crowd."""

    type: Literal["crowd_surge"]
    zone_id: str | None = None
    zone_type: str = "lakeside"
    factor: float = Field(6.0, gt=1, le=50)

    def bind(self, dep: pl.DataFrame, start: float, end: float, city: Any, seed: int) -> Bound:
        """Bound to the deployment's entities (see :meth:`Incident.bind`)."""
        zone = self.zone_id
        if zone is None:
            people = dep.filter(pl.col("kind") == "people")
            cand = people.filter(pl.col("zone_type").str.contains(self.zone_type))
            zone = pick(cand if cand.height else people, self.near, seed, "zone_id",
                        "crowd_surge: the deployment has no people counters")
        return Bound(self, start, end, "zone", (zone,), zones=frozenset([zone]))

    def members(self, b: Bound, fleet: Fleet) -> dict[str, np.ndarray]:
        """Masks of the sensors it touches (see :meth:`Incident.members`)."""
        return {"on": np.isin(fleet.zone_id, list(b.zones))}

    def alarm_mask(self, b: Bound, fleet: Fleet) -> np.ndarray | None:
        """Alarm-capable sensors it may trip (see :meth:`Incident.alarm_mask`)."""
        # the zone's people counters: inflow alarm
        return (fleet.kind == KIND_CODE["people"]) & np.isin(fleet.zone_id, list(b.zones))

    def truth_sensors(self, b: Bound, dep: pl.DataFrame | None) -> set[str]:
        """Sensors its alert names (see :meth:`Incident.truth_sensors`)."""
        return sensors_of(dep, b, "zone_id", b.zones, "people")

    def change(self, b, member, fleet, idx, tb, inten, live, v):
        """Change the readings (see :meth:`Incident.change`)."""
        on = live & (fleet.kind[idx] == KIND_CODE["people"]) & member["on"][idx]
        # The count grows by (f(t) - 1) * count over the ramp; those extra people
        # entered.  The inflow is the count's derivative: it steps up at the onset
        # (the derivative of a ramp is a step) and falls back when the count stops
        # growing, so entries in the interval = the normal entries + the arrivals
        # base_count * (f(t) - f(t - per)).  Inflow leads; density lags.  Exits are
        # unchanged (the fade after the end is the crowd dispersing slowly).
        grow = self.factor - 1
        f = 1 + grow * inten
        f_before = 1 + grow * b.intensity(tb - fleet.period[idx])
        base = v["people_count"]
        arrived = np.round(np.maximum(base * (f - f_before), 0))
        v["people_count"] = np.where(on, np.minimum(np.round(base * f), 200_000), base)
        v["entries"] = np.where(on, np.minimum(v["entries"] + arrived, 20_000), v["entries"])
        return None
