"""Flash flood: a cloudburst around a place; rain gauges, drains and the lake level rise."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import Field

from device_sim.fleet import KIND_CODE, Fleet
from device_sim.incidents.base import Bound, Incident, Seconds, register, within


@register
class FlashFlood(Incident):
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

    def bind(self, dep: pl.DataFrame, start: float, end: float, city: Any, seed: int) -> Bound:
        """Bound to the deployment's entities (see :meth:`Incident.bind`)."""
        water = dep.filter(pl.col("kind") == "water")
        centre = self.near or ((float(water["lon"].mean()), float(water["lat"].mean()))
                               if water.height else (0.0, 0.0))
        local = water.filter(pl.col("role").is_in(["drain", "rain"]))
        hit = within(local, centre, self.radius_m)
        lake = frozenset(water.filter(pl.col("role") == "lake_level")["sensor_id"].to_list()) \
            if self.lake_rise_m > 0 else frozenset()
        zones = dep.filter(pl.col("sensor_id").is_in(list(hit)))["zone_id"].unique().sort()
        return Bound(self, start, end, "zone", tuple(zones.to_list()), sensors=hit | lake,
                     zones=frozenset(zones.to_list()), centre=centre)

    def alarm_mask(self, b: Bound, fleet: Fleet) -> np.ndarray | None:
        """Alarm-capable sensors it may trip (see :meth:`Incident.alarm_mask`)."""
        # rain gauges and drains: heavy-rain / high-level alarms
        return (fleet.kind == KIND_CODE["water"]) & np.isin(fleet.role, ["rain", "drain"]) \
            & np.isin(fleet.sensor_id, list(b.sensors))

    def apply(self, b, member, fleet, idx, t, v):
        """Change the readings (see :meth:`Incident.apply`)."""
        # not skipped when quiet: the lake drains away for hours after the end
        tb = b.fold(t)
        inten = b.intensity(tb)
        return self.change(b, member, fleet, idx, tb, inten, inten > 0, v)

    def change(self, b, member, fleet, idx, tb, inten, live, v):
        """Change the readings (see :meth:`Incident.change`)."""
        on = (fleet.kind[idx] == KIND_CODE["water"]) & member["on"][idx]
        role = fleet.role[idx]
        rain = on & live & (role == "rain")
        drain = on & (role == "drain")
        runoff = b.intensity(tb, linear=True)  # drains fill over the ramp
        # the lake fills while it rains and drains away slowly (6 h) afterwards
        fill = np.clip((tb - b.start) / max(self.duration, 1), 0, 1)
        fade = np.clip(1 - (tb - b.end) / (6 * 3600), 0, 1)
        lake_i = np.where(tb < b.start, 0.0, np.where(tb <= b.end, fill, fade))
        lake = on & (role == "lake_level") & (lake_i > 0)
        v["rain_mm_h"] = np.where(rain, np.round(np.maximum(
            v["rain_mm_h"], self.rain_mm_h * inten), 2), v["rain_mm_h"])
        v["level_m"] = np.where(drain, np.round(v["level_m"] + self.drain_rise_m * runoff, 3),
                                np.where(lake, np.round(
                                    v["level_m"] + self.lake_rise_m * lake_i, 3),
                                    v["level_m"]))
        return None
