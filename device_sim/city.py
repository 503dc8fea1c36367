"""The city model the simulator places sensors on: the twin's ``twin.citymodel`` when present.

In: a seed.  Out: a city object with ``segments`` (GeoDataFrame: segment_id, lanes,
free_flow_kmh, capacity_veh_h, length_m, geometry), ``zones`` (zone_id, zone_type, area_m2,
geometry), ``lake`` (polygon), ``graph`` (networkx DiGraph whose edges carry ``segment_id``)
and ``shortest_path(a, b)``.  Only when the twin's module is not installed yet does a small
stand-in of the same shape get built here (ring and radial roads around a round lake).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import geopandas as gpd
import networkx as nx
import numpy as np
import shapely
from shapely.geometry import LineString, Point, Polygon

LAKE_LON, LAKE_LAT = 121.929, 30.899
M_PER_DEG_LAT = 111_320.0
M_PER_DEG_LON = M_PER_DEG_LAT * math.cos(math.radians(LAKE_LAT))


def meters(dlon: Any, dlat: Any) -> Any:
    """Distance in metres of a (lon, lat) difference near the lake (equirectangular)."""
    return np.hypot(np.asarray(dlon) * M_PER_DEG_LON, np.asarray(dlat) * M_PER_DEG_LAT)


@lru_cache(maxsize=4)
def load_city(seed: int = 0) -> Any:
    """The twin's city for ``seed`` (cached); the stand-in only if the twin is missing."""
    try:
        from twin.citymodel import build_city
    except ModuleNotFoundError as exc:
        if exc.name not in ("twin", "twin.citymodel"):
            raise
        return _standin(seed)
    return build_city(seed)


def lake_geometry(city: Any) -> Any:
    """The lake as one shapely geometry (the twin keeps it as a one-row GeoDataFrame)."""
    lake = city.lake
    return lake.geometry.union_all() if hasattr(lake, "geometry") else lake


@dataclass(frozen=True)
class _City:
    segments: gpd.GeoDataFrame
    zones: gpd.GeoDataFrame
    lake: Polygon
    graph: nx.DiGraph

    def shortest_path(self, a: Any, b: Any) -> list:
        return nx.shortest_path(self.graph, a, b, weight="length_m")


def _xy(r_m: float, ang: float) -> tuple[float, float]:
    return (LAKE_LON + r_m * math.cos(ang) / M_PER_DEG_LON,
            LAKE_LAT + r_m * math.sin(ang) / M_PER_DEG_LAT)


def _standin(seed: int) -> _City:  # pragma: no cover - replaced by the twin's model
    lake = Point(LAKE_LON, LAKE_LAT).buffer(1350 / M_PER_DEG_LON, 64)
    lake = shapely.affinity.scale(lake, 1.0, M_PER_DEG_LON / M_PER_DEG_LAT)
    rings = [1700, 2600, 3600, 4800]
    n_rad = 16
    g = nx.DiGraph()
    segs = []

    def add(a, b, lanes, vf):
        pa, pb = g.nodes[a]["pos"], g.nodes[b]["pos"]
        geom = LineString([pa, pb])
        length = float(meters(pb[0] - pa[0], pb[1] - pa[1]))
        for u, v, gg in ((a, b, geom), (b, a, geom.reverse())):
            sid = f"seg-{len(segs):05d}"
            cap = 1800 * lanes
            segs.append((sid, lanes, vf, cap, length, gg))
            g.add_edge(u, v, segment_id=sid, length_m=length)

    for ri, r in enumerate(rings):
        for k in range(n_rad):
            g.add_node((ri, k), pos=_xy(r, 2 * math.pi * k / n_rad))
    for ri in range(len(rings)):
        for k in range(n_rad):
            add((ri, k), (ri, (k + 1) % n_rad), 3 if ri in (0, 2) else 2, 60)
            if ri + 1 < len(rings):
                add((ri, k), (ri + 1, k), 2, 50)
    segments = gpd.GeoDataFrame(segs, columns=["segment_id", "lanes", "free_flow_kmh",
                                               "capacity_veh_h", "length_m", "geometry"],
                                crs="EPSG:4326")
    zones = []
    for ri in range(len(rings) - 1):
        for k in range(n_rad):
            a0, a1 = 2 * math.pi * k / n_rad, 2 * math.pi * (k + 1) / n_rad
            pts = [_xy(rings[ri] + 60, a0 + t * (a1 - a0)) for t in np.linspace(0.05, 0.95, 6)]
            pts += [_xy(rings[ri + 1] - 60, a1 - t * (a1 - a0)) for t in np.linspace(0.05, 0.95, 6)]
            poly = Polygon(pts)
            if ri == 0:
                zt = "lakeside" if k % 4 else "plaza"
            elif ri == 1:
                zt = "metro_station" if k % 4 == 0 else ("commercial" if k % 2 else "residential")
            else:
                zt = ("port" if k == 14 else "logistics_park" if k == 13 else
                      "industrial" if k in (11, 12, 15) else "residential")
            area = poly.area * M_PER_DEG_LON * M_PER_DEG_LAT
            zones.append((f"zone-{ri}-{k:02d}", zt, area, poly))
    zgdf = gpd.GeoDataFrame(zones, columns=["zone_id", "zone_type", "area_m2", "geometry"],
                            crs="EPSG:4326")
    return _City(segments, zgdf, lake, g)
