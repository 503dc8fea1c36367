"""Gateway outage: a gateway goes dark; none of its sensors' readings (or heartbeats) arrive."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import polars as pl

from device_sim.fleet import Fleet
from device_sim.incidents.base import Bound, Incident, dark, pick, register


@register
class GatewayOutage(Incident):
    """A gateway goes dark: none of its sensors' readings arrive."""

    type: Literal["gateway_outage"]
    gateway_id: str | None = None

    def bind(self, dep: pl.DataFrame, start: float, end: float, city: Any, seed: int) -> Bound:
        """Bound to the deployment's entities (see :meth:`Incident.bind`)."""
        gw = self.gateway_id or pick(dep.filter(pl.col("gateway_id").is_not_null()), self.near,
                                     seed, "gateway_id",
                                     "gateway_outage: the deployment has no gateways")
        sensors = frozenset(dep.filter(pl.col("gateway_id") == gw)["sensor_id"].to_list())
        return Bound(self, start, end, "gateway", (gw,), sensors=sensors)

    def members(self, b: Bound, fleet: Fleet) -> dict[str, np.ndarray]:
        """Masks of the sensors it touches (see :meth:`Incident.members`)."""
        return {"on": fleet.gateway_id == b.entity_ids[0]}

    def gateways_down(self, b: Bound, gateway_ids: np.ndarray, t: float) -> np.ndarray | None:
        """Dark gateways (see :meth:`Incident.gateways_down`)."""
        return dark(b, np.full(len(gateway_ids), float(t))) & (gateway_ids == b.entity_ids[0])

    def apply(self, b, member, fleet, idx, t, v):
        """Change the readings (see :meth:`Incident.apply`)."""
        live = dark(b, t)  # all at once, no ramp
        if not live.any():
            return None
        return live & member["on"][idx]
