"""What the alert engine knows of the city: segment topology and geometry, zone areas.

In: a city model (the generated city, :func:`citypulse.city.build_city`, by default).  Out: dicts the
evaluators read: ``segments`` (from/to nodes, road, free-flow speed, length, GeoJSON, mid
point, zone), ``succ``/``pred`` (downstream/upstream segments), ``zones`` (type, area,
name, centre, outline) and ``zone_lookup(lon, lat)``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from analytics.findings import CITY

log = logging.getLogger("analytics.engine")


class CityModel:
    """What the engine needs of the twin: segment topology and geometry, zone areas."""

    def __init__(self, city: Any = None) -> None:
        self.segments: dict[str, dict] = {}
        self.succ: dict[str, list[str]] = {}
        self.pred: dict[str, list[str]] = {}
        self.zones: dict[str, dict] = {}
        self.zone_lookup: Callable[[Any, Any], Any] | None = None
        self.model: Any = None
        self.key = ""
        if city is None:
            from citypulse.city import build_city

            city = build_city()
        import shapely

        from citypulse.city.store import model_key

        self.model, self.key = city, model_key(city)
        from shapely.geometry import mapping

        seg = city.segments
        mids = shapely.line_interpolate_point(seg.geometry.values, 0.5, normalized=True)
        seg_zone = city.zones_of(shapely.get_x(mids), shapely.get_y(mids))
        by_from: dict[str, list[str]] = {}
        by_to: dict[str, list[str]] = {}
        for row, mid, z in zip(seg.itertuples(index=False), mids, seg_zone, strict=True):
            self.segments[row.segment_id] = {
                "from": row.from_node, "to": row.to_node, "road": row.road,
                "free_flow_kmh": float(row.free_flow_kmh), "length_m": float(row.length_m),
                "geometry": mapping(row.geometry), "lon": mid.x, "lat": mid.y,
                "zone_id": z or CITY,
            }
            by_from.setdefault(row.from_node, []).append(row.segment_id)
            by_to.setdefault(row.to_node, []).append(row.segment_id)
        for sid, s in self.segments.items():
            self.succ[sid] = [x for x in by_from.get(s["to"], [])
                              if self.segments[x]["to"] != s["from"]]
            self.pred[sid] = [x for x in by_to.get(s["from"], [])
                              if self.segments[x]["from"] != s["to"]]
        for row in city.zones.itertuples(index=False):
            c = row.geometry.centroid
            self.zones[row.zone_id] = {
                "zone_type": row.zone_type, "area_m2": float(row.area_m2), "name": row.name,
                "density_limit": float(row.density_limit_per_1000m2),
                "lon": c.x, "lat": c.y, "geometry": mapping(row.geometry.simplify(1e-4)),
            }
        self.zone_lookup = city.zones_of
