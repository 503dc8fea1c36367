"""Building fire: smoke, heat and alarms in one building (smoke rises fast, then heat)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import Field

from device_sim.alarms import FIRE_ALARM_SMOKE_PCT
from device_sim.fleet import KIND_CODE, Fleet
from device_sim.incidents.base import Bound, Incident, Seconds, pick, register

HEAT_ALARM_C = 57.0  # a heat detector's fixed alarm temperature


def fire_or_gas(b: Bound, fleet: Fleet) -> np.ndarray:
    """The incident's fire and gas detectors (their alarms report at once)."""
    return np.isin(fleet.sensor_id, list(b.sensors)) & np.isin(
        fleet.kind, [KIND_CODE["fire"], KIND_CODE["gas"]])


@register
class BuildingFire(Incident):
    """Smoke, heat and alarms in one building (smoke rises fast, then heat)."""

    type: Literal["building_fire"]
    onset: Seconds | None = 20.0
    building_id: str | None = None
    smoke_pct: float = Field(45, gt=0, le=100)
    temperature_c: float = Field(320, gt=0, le=1100)

    def bind(self, dep: pl.DataFrame, start: float, end: float, city: Any, seed: int) -> Bound:
        """Bound to the deployment's entities (see :meth:`Incident.bind`)."""
        bid = self.building_id or pick(dep.filter(pl.col("kind") == "fire"), self.near, seed,
                                       "building_id", "building_fire: the deployment has no "
                                                      "fire detectors")
        sensors = frozenset(dep.filter(pl.col("building_id") == bid)["sensor_id"].to_list())
        return Bound(self, start, end, "building", (bid,), sensors=sensors)

    def members(self, b: Bound, fleet: Fleet) -> dict[str, np.ndarray]:
        """Masks of the sensors it touches (see :meth:`Incident.members`)."""
        return {"on": fleet.building_id == b.entity_ids[0]}

    alarm_mask = staticmethod(fire_or_gas)

    def change(self, b, member, fleet, idx, tb, inten, live, v):
        """Change the readings (see :meth:`Incident.change`)."""
        on = live & (fleet.kind[idx] == KIND_CODE["fire"]) & member["on"][idx]
        v["smoke_pct"] = np.where(on, np.round(np.maximum(
            v["smoke_pct"], self.smoke_pct * inten), 3), v["smoke_pct"])
        temp = v["temperature_c"]
        v["temperature_c"] = np.where(on, np.round(temp + (self.temperature_c - temp)
                                                   * inten, 2), temp)
        # detectors alarm on smoke obscuration (or a heat-detector level)
        v["alarm"] = np.where(on & ((v["smoke_pct"] >= FIRE_ALARM_SMOKE_PCT)
                                    | (v["temperature_c"] >= HEAT_ALARM_C)), 1.0, v["alarm"])
        return None
