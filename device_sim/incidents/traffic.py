"""Traffic accident: a segment's speed collapses; a queue builds on the segments upstream."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import Field

from device_sim.fleet import KIND_CODE, Fleet
from device_sim.incidents.base import Bound, Incident, Seconds, pick, register, sensors_of


def upstream(city: Any, segment_id: str, hops: int) -> set[str]:
    """Segments up to ``hops`` junctions upstream of ``segment_id`` on the road graph."""
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


@register
class TrafficAccident(Incident):
    """A segment's speed collapses within seconds; a queue builds (over ``ramp``) upstream."""

    type: Literal["traffic_accident"]
    onset: Seconds | None = 2.0
    segment_id: str | None = None
    speed_kmh: float = Field(4.0, ge=0, le=30)
    queue_hops: int = Field(2, ge=0, le=6)

    def bind(self, dep: pl.DataFrame, start: float, end: float, city: Any, seed: int) -> Bound:
        """Bound to the deployment's entities (see :meth:`Incident.bind`)."""
        seg = self.segment_id or pick(dep.filter(pl.col("kind") == "traffic"), self.near, seed,
                                      "segment_id", "traffic_accident: the deployment has no "
                                                    "traffic sensors")
        if city is None:
            from device_sim.city import city_of
            city = city_of(dep)
        queue = upstream(city, seg, self.queue_hops)
        return Bound(self, start, end, "segment", (seg,), segments=frozenset([seg]),
                     queue=frozenset(queue))

    def members(self, b: Bound, fleet: Fleet) -> dict[str, np.ndarray]:
        """Masks of the sensors it touches (see :meth:`Incident.members`)."""
        return {"on": np.isin(fleet.segment_id, list(b.segments)),
                "queue": np.isin(fleet.segment_id, list(b.queue))}

    def alarm_mask(self, b: Bound, fleet: Fleet) -> np.ndarray | None:
        """Alarm-capable sensors it may trip (see :meth:`Incident.alarm_mask`)."""
        return (fleet.kind == KIND_CODE["traffic"]) & np.isin(
            fleet.segment_id, list(b.segments | b.queue))

    def truth_sensors(self, b: Bound, dep: pl.DataFrame | None) -> set[str]:
        """Sensors its alert names (see :meth:`Incident.truth_sensors`)."""
        return sensors_of(dep, b, "segment_id", b.segments, "traffic")

    def change(self, b, member, fleet, idx, tb, inten, live, v):
        """Change the readings (see :meth:`Incident.change`)."""
        tr = fleet.kind[idx] == KIND_CODE["traffic"]
        on = live & tr & member["on"][idx]
        q = live & tr & member["queue"][idx]
        # the blocked segment collapses at the onset; the queue builds over the ramp
        i = np.where(q, b.intensity(tb, linear=True), inten)
        sp = v["speed_kmh"]
        v["speed_kmh"] = np.where(on, np.round(sp * (1 - i) + i * self.speed_kmh, 1),
                                  np.where(q, np.round(sp * (1 - 0.75 * i), 1), sp))
        c = v["vehicle_count"]
        v["vehicle_count"] = np.where(on, np.floor(c * (1 - 0.85 * i)),
                                      np.where(q, np.floor(c * (1 - 0.4 * i)), c))
        o = v["occupancy_pct"]
        v["occupancy_pct"] = np.where(on | q, np.round(o + (85 - o) * i * np.where(
            on, 1.0, 0.8), 1), o)
        return None
