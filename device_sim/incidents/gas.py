"""Gas leak: methane (and some CO) spreading from a point (a pipe rupture: sharp onset)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import Field

from device_sim.city import meters
from device_sim.fleet import KIND_CODE
from device_sim.incidents.base import (
    Bound,
    Incident,
    ScenarioError,
    Seconds,
    nearest,
    register,
    within,
)
from device_sim.incidents.fire import fire_or_gas


@register
class GasLeak(Incident):
    """Methane (and some CO) spreading from a point (a pipe rupture: sharp onset)."""

    type: Literal["gas_leak"]
    onset: Seconds | None = 8.0
    radius_m: float = Field(250, gt=0, le=5000)
    ch4_lel_pct: float = Field(60, gt=0, le=100)

    def bind(self, dep: pl.DataFrame, start: float, end: float, city: Any, seed: int) -> Bound:
        """Bound to the deployment's entities (see :meth:`Incident.bind`)."""
        gas = dep.filter(pl.col("kind") == "gas")
        row = nearest(gas, self.near, seed)
        if row is None:
            raise ScenarioError("gas_leak: the deployment has no gas detectors")
        centre = (row["lon"], row["lat"])  # snapped to the nearest detector
        hit = within(gas, centre, self.radius_m)
        return Bound(self, start, end, "sensor", tuple(sorted(hit)), sensors=hit,
                     zones=frozenset([row["zone_id"]]), centre=centre)

    alarm_mask = staticmethod(fire_or_gas)

    def change(self, b, member, fleet, idx, tb, inten, live, v):
        """Change the readings (see :meth:`Incident.change`)."""
        on = live & (fleet.kind[idx] == KIND_CODE["gas"]) & member["on"][idx]
        cx, cy = b.centre
        d = meters(fleet.lon[idx] - cx, fleet.lat[idx] - cy)
        peak = self.ch4_lel_pct * inten * np.exp(-3 * d / self.radius_m)
        v["ch4_lel_pct"] = np.where(on, np.round(np.clip(np.maximum(
            v["ch4_lel_pct"], peak), 0, 100), 2), v["ch4_lel_pct"])
        v["co_ppm"] = np.where(on, np.round(np.clip(v["co_ppm"] + peak * 0.5, 0, 5000), 2),
                               v["co_ppm"])
        return None
