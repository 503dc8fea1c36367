"""The city model's shape: :class:`City` (layers, road graph, lookups) and :func:`assemble`.

In: layers as GeoDataFrames (EPSG:4326) - directed road segments, zones, water, nodes,
gates - and the city's metric CRS (UTM zone of its centre).  Out: a :class:`City` with the
road graph, zone neighbours and depots derived, the same object whichever source the city
came from (the generated Dishui Lake city, an imported OpenStreetMap or GIS file, or the
copy stored in the database).  Zone types and their density limits (:data:`ZONE_TYPES`)
are the catalogue every importer maps to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer

WGS84 = "EPSG:4326"

# zone_type -> (typical persons per m2 -> people_capacity, density limit persons/1,000 m2).
# The one source of the crowd limits: the twin's density ratio, the crowd alert rule
# (analytics, rules.yaml only overrides single zones by id) and the dashboards read them.
ZONE_TYPES: dict[str, tuple[float, float]] = {
    "lake": (0.0, 1000.0),
    "lakeside": (0.08, 1000.0),
    "commercial": (0.05, 1000.0),
    "residential": (0.03, 1000.0),
    "education": (0.02, 1000.0),
    "industrial": (0.005, 1000.0),
    "logistics": (0.003, 1000.0),
    "port": (0.002, 1000.0),
    "green": (0.002, 1000.0),
    "plaza": (0.5, 1500.0),          # squares: crowds are what they are for
    "metro_station": (1.0, 2000.0),  # platforms and halls: dense by design
    "mixed": (0.03, 1000.0),  # imported land without a known use (grid cells)
}
DEFAULT_ZONE_TYPE = "mixed"


def density_limit(zone_type: str | None) -> float:
    """The crowd density limit (persons per 1,000 m2) of a zone type (unknown: ``mixed``'s)."""
    return ZONE_TYPES.get(zone_type or DEFAULT_ZONE_TYPE, ZONE_TYPES[DEFAULT_ZONE_TYPE])[1]
DEPOT_TYPES = ("port", "logistics", "industrial")

SEGMENT_COLUMNS = ("segment_id", "from_node", "to_node", "road", "road_class", "ring",
                   "radial", "direction", "lanes", "free_flow_kmh", "capacity_veh_h",
                   "length_m", "geometry")
ZONE_COLUMNS = ("zone_id", "name", "zone_type", "band", "sector", "area_m2",
                "people_capacity", "density_limit_per_1000m2", "depot_node", "geometry")
NODE_COLUMNS = ("node_id", "kind", "ring", "lon", "lat", "zone_id", "geometry")
GATE_COLUMNS = ("gate_id", "zone_id", "name", "lon", "lat", "geometry")
LAYER_NAMES = {"lake": "lake", "zones": "zone", "segments": "road_segment", "nodes": "node",
               "gates": "gate"}


@dataclass(eq=False)
class City:
    """The city model: layers as GeoDataFrames (EPSG:4326), the road graph, lookups.

    Attributes (stable names; see :mod:`citypulse.city`):
      ``lake``      GeoDataFrame of water bodies: name, area_m2, radius_m, geometry
      ``segments``  GeoDataFrame, one row per directed segment: ``SEGMENT_COLUMNS``
      ``zones``     GeoDataFrame: ``ZONE_COLUMNS`` (Polygon), tiling the city
      ``nodes``     GeoDataFrame: ``NODE_COLUMNS`` (Point); kind = junction|access|depot|end
      ``gates``     GeoDataFrame: ``GATE_COLUMNS`` (Point) on metro station boundaries
      ``graph``     networkx.DiGraph: nodes by node_id (lon, lat, kind), edges
                    from_node -> to_node with segment_id, length_m, free_flow_kmh,
                    travel_time_s, lanes, capacity_veh_h
      ``boundary``  the city's outline (shapely Polygon, EPSG:4326)
      ``depots``    dict zone_id -> depot node_id for port, logistics and industrial zones
      ``zone_neighbours`` tuple of (zone_id, zone_id) pairs sharing a border (a < b)
      ``name``, ``version`` (0 for the generated city), ``metric_crs`` (UTM of the centre)
    """

    seed: int
    lake: gpd.GeoDataFrame
    segments: gpd.GeoDataFrame
    zones: gpd.GeoDataFrame
    nodes: gpd.GeoDataFrame
    gates: gpd.GeoDataFrame
    graph: nx.DiGraph
    boundary: Any
    depots: dict[str, str]
    zone_neighbours: tuple[tuple[str, str], ...]
    name: str = "dishui"
    version: int = 0
    metric_crs: str = "EPSG:32651"
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    # --- metric views ------------------------------------------------------------------
    def metric(self, layer: str) -> gpd.GeoDataFrame:
        """The layer (``lake``/``segments``/``zones``/``nodes``/``gates``) in metres."""
        key = "metric:" + layer
        if key not in self._cache:
            self._cache[key] = getattr(self, layer).to_crs(self.metric_crs)
        return self._cache[key]

    def _transformer(self, inverse: bool = False) -> Transformer:
        key = "to_wgs" if inverse else "to_m"
        if key not in self._cache:
            a, b = (self.metric_crs, WGS84) if inverse else (WGS84, self.metric_crs)
            self._cache[key] = Transformer.from_crs(a, b, always_xy=True)
        return self._cache[key]

    # --- lookups -----------------------------------------------------------------------
    def _zone_tree(self) -> shapely.STRtree:
        if "zone_tree" not in self._cache:
            self._cache["zone_tree"] = shapely.STRtree(self.metric("zones").geometry.values)
        return self._cache["zone_tree"]

    def _segment_tree(self) -> shapely.STRtree:
        if "seg_tree" not in self._cache:
            self._cache["seg_tree"] = shapely.STRtree(self.metric("segments").geometry.values)
        return self._cache["seg_tree"]

    def to_metric(self, lon: Any, lat: Any) -> tuple[np.ndarray, np.ndarray]:
        """WGS84 lon/lat (scalars or arrays) to the city's metric CRS."""
        return self._transformer().transform(np.asarray(lon, dtype=float),
                                              np.asarray(lat, dtype=float))

    def to_wgs(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """Metric x/y back to WGS84 lon/lat."""
        return self._transformer(True).transform(np.asarray(x, dtype=float),
                                                 np.asarray(y, dtype=float))

    def zones_of(self, lon: Any, lat: Any) -> np.ndarray:
        """zone_id (object array, None outside the city) for arrays of lon/lat."""
        x, y = self.to_metric(np.atleast_1d(lon), np.atleast_1d(lat))
        pts = shapely.points(x, y)
        out = np.full(len(pts), None, dtype=object)
        idx_pt, idx_zone = self._zone_tree().query(pts, predicate="intersects")
        ids = self.zones["zone_id"].to_numpy()
        # a point on a shared border belongs to the first zone found (lowest index)
        order = np.lexsort((idx_zone, idx_pt))[::-1]
        out[idx_pt[order]] = ids[idx_zone[order]]
        return out

    def zone_of(self, lon: float, lat: float) -> str | None:
        """The zone_id containing the point, or None outside the city."""
        return self.zones_of([lon], [lat])[0]

    def nearest_segments(self, lon: Any, lat: Any, max_m: float = 25.0
                         ) -> tuple[np.ndarray, np.ndarray]:
        """(segment_id or None, distance m) of the nearest segment within ``max_m``."""
        x, y = self.to_metric(np.atleast_1d(lon), np.atleast_1d(lat))
        pts = shapely.points(x, y)
        # candidates within max_m (cheaper than query_nearest), then the closest per point
        cand_pt, cand_seg = self._segment_tree().query(pts, predicate="dwithin", distance=max_m)
        geoms = self.metric("segments").geometry.values
        d = shapely.distance(pts[cand_pt], geoms[cand_seg])
        order = np.lexsort((cand_seg, d, cand_pt))
        cand_pt, cand_seg, d = cand_pt[order], cand_seg[order], d[order]
        first = np.ones(len(cand_pt), dtype=bool)
        first[1:] = cand_pt[1:] != cand_pt[:-1]
        ids = self.segments["segment_id"].to_numpy()
        out = np.full(len(pts), None, dtype=object)
        dist = np.full(len(pts), np.nan)
        out[cand_pt[first]] = ids[cand_seg[first]]
        dist[cand_pt[first]] = d[first]
        return out, dist

    def nearest_segment(self, lon: float, lat: float, max_m: float = 25.0) -> str | None:
        """The segment_id nearest to the point within ``max_m`` metres, or None."""
        return self.nearest_segments([lon], [lat], max_m)[0][0]

    def shortest_path(self, a: str, b: str, weight: str = "travel_time_s") -> list[str]:
        """Node ids of the fastest (or ``weight='length_m'``: shortest) path from a to b.

        An imported extract is cut at its edge, so some nodes cannot reach others (one-way
        streets leaving the extract): with no path from a to b the path is ``[a]``.
        """
        try:
            return nx.shortest_path(self.graph, a, b, weight=weight)
        except nx.NetworkXNoPath:
            return [a]

    def path_segments(self, a: str, b: str, weight: str = "travel_time_s") -> list[str]:
        """Segment ids along :meth:`shortest_path` from a to b."""
        nodes = self.shortest_path(a, b, weight)
        return [self.graph.edges[u, v]["segment_id"] for u, v in zip(nodes, nodes[1:], strict=False)]

    def point_along(self, segment_id: str, fraction: float = 0.5) -> tuple[float, float]:
        """(lon, lat) of the point at ``fraction`` of a segment's length (on its lane)."""
        geom = self.metric("segments").set_index("segment_id").geometry[segment_id]
        p = geom.interpolate(fraction, normalized=True)
        lon, lat = self.to_wgs(p.x, p.y)
        return float(lon), float(lat)

    def layers(self) -> gpd.GeoDataFrame:
        """All layers in one GeoDataFrame (EPSG:4326) with a ``layer`` column."""
        parts = [getattr(self, attr).assign(layer=name) for attr, name in LAYER_NAMES.items()]
        df = pd.concat([p for p in parts if len(p)], ignore_index=True)
        cols = ["layer"] + [c for c in df.columns if c not in ("layer", "geometry")] + ["geometry"]
        return gpd.GeoDataFrame(df[cols], geometry="geometry", crs=WGS84)

    def summary(self) -> dict:
        """Counts and extent, JSON-friendly (``citypulse city show``)."""
        x0, y0, x1, y1 = (float(v) for v in shapely.bounds(self.boundary))
        return {"name": self.name, "version": self.version, "metric_crs": self.metric_crs,
                "segments": len(self.segments), "nodes": len(self.nodes),
                "zones": len(self.zones), "water": len(self.lake), "gates": len(self.gates),
                "road_km": round(float(self.segments["length_m"].sum()) / 1000, 2),
                "zone_types": {str(k): int(v) for k, v in
                               self.zones["zone_type"].value_counts().items()},
                "bbox": [round(v, 6) for v in (x0, y0, x1, y1)]}


def utm_crs(lon: float, lat: float) -> str:
    """The UTM zone (EPSG code) of a point: a metric CRS good to ~0.1 % across a city."""
    zone = int((lon + 180.0) // 6.0) + 1
    return f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"


def neighbours(zones_m: gpd.GeoDataFrame) -> tuple[tuple[str, str], ...]:
    """Pairs of zones (metric CRS) sharing a border longer than 1 m."""
    geoms = zones_m.geometry.values
    ids = zones_m["zone_id"].to_numpy()
    tree = shapely.STRtree(geoms)
    a, c = tree.query(geoms, predicate="intersects")
    keep = a < c
    a, c = a[keep], c[keep]
    shared = shapely.length(shapely.intersection(
        shapely.boundary(geoms[a]), shapely.boundary(geoms[c])))
    pairs = {tuple(sorted((ids[i], ids[j]))) for i, j, s in zip(a, c, shared, strict=True)
             if s > 1.0}
    return tuple(sorted(pairs))


def road_graph(nodes: gpd.GeoDataFrame, segments: gpd.GeoDataFrame) -> nx.DiGraph:
    """The directed road graph: nodes by node_id, one edge per segment (fastest kept)."""
    graph = nx.DiGraph()
    graph.add_nodes_from((n, {"lon": x, "lat": y, "kind": k}) for n, x, y, k in zip(
        nodes["node_id"], nodes["lon"], nodes["lat"], nodes["kind"], strict=True))
    tt = segments["length_m"].to_numpy(float) / (segments["free_flow_kmh"].to_numpy(float) / 3.6)
    order = np.argsort(-tt, kind="stable")  # slowest first, so the fastest parallel edge wins
    cols = [segments[c].to_numpy() for c in ("from_node", "to_node", "segment_id", "length_m",
                                              "free_flow_kmh", "lanes", "capacity_veh_h")]
    graph.add_edges_from(
        (cols[0][i], cols[1][i], {"segment_id": cols[2][i], "length_m": float(cols[3][i]),
                                  "free_flow_kmh": float(cols[4][i]), "lanes": int(cols[5][i]),
                                  "capacity_veh_h": float(cols[6][i]),
                                  "travel_time_s": float(tt[i])}) for i in order)
    return graph


def assemble(*, name: str, segments: gpd.GeoDataFrame, zones: gpd.GeoDataFrame,
             water: gpd.GeoDataFrame, nodes: gpd.GeoDataFrame, boundary: Any,
             gates: gpd.GeoDataFrame | None = None, metric_crs: str | None = None,
             version: int = 0, seed: int = 0, depots: dict[str, str] | None = None) -> City:
    """A :class:`City` from its layers (EPSG:4326); derives what the layers imply.

    ``zones`` need zone_id, name, zone_type (a :data:`ZONE_TYPES` key) and geometry; area,
    capacity and density limit are filled from the zone type when missing.  ``nodes`` need
    node_id, kind and geometry.  Derived: the road graph, zone neighbours, each node's zone
    and, for port/logistics/industrial zones, a depot (the node nearest the zone's centre).
    """
    if metric_crs is None:
        c = shapely.centroid(boundary)
        metric_crs = utm_crs(c.x, c.y)
    zones_m = zones.to_crs(metric_crs)
    zones = zones.copy()
    zones["area_m2"] = zones_m.geometry.area.to_numpy()
    per_m2 = zones["zone_type"].map(lambda t: ZONE_TYPES[t][0])
    zones["people_capacity"] = (zones["area_m2"] * per_m2).round().astype("int64")
    zones["density_limit_per_1000m2"] = zones["zone_type"].map(lambda t: ZONE_TYPES[t][1])
    for col in ("band", "sector"):
        zones[col] = zones[col].astype("Int64") if col in zones else pd.array(
            [pd.NA] * len(zones), dtype="Int64")
    nodes = nodes.copy()
    nodes["lon"], nodes["lat"] = nodes.geometry.x, nodes.geometry.y
    if "ring" not in nodes:
        nodes["ring"] = pd.array([pd.NA] * len(nodes), dtype="Int64")
    segments = segments.copy()
    for col in ("ring", "radial"):
        segments[col] = segments[col].astype("Int64") if col in segments else pd.array(
            [pd.NA] * len(segments), dtype="Int64")
    gates = gates if gates is not None else gpd.GeoDataFrame(
        {c: [] for c in GATE_COLUMNS[:-1]}, geometry=[], crs=WGS84)
    water = water.copy()
    water["area_m2"] = water.to_crs(metric_crs).geometry.area.to_numpy() if len(water) else []
    if "radius_m" not in water:
        water["radius_m"] = np.sqrt(water["area_m2"].to_numpy(float) / np.pi)
    if "name" not in water:
        water["name"] = ""
    city = City(seed=seed, lake=water[["name", "area_m2", "radius_m", "geometry"]],
                segments=segments[list(SEGMENT_COLUMNS)], zones=zones, nodes=nodes,
                gates=gates[list(GATE_COLUMNS)], graph=road_graph(nodes, segments),
                boundary=boundary, depots={}, zone_neighbours=neighbours(zones_m),
                name=name, version=version, metric_crs=metric_crs)
    if depots is None:
        depots = _depots(city, zones_m)
    city.depots = depots
    zones["depot_node"] = zones["zone_id"].map(depots)
    city.zones = zones[list(ZONE_COLUMNS)]
    city._cache["metric:zones"] = zones_m.assign(**{c: zones[c].to_numpy() for c in (
        "area_m2", "people_capacity", "density_limit_per_1000m2", "depot_node", "band",
        "sector")})[list(ZONE_COLUMNS)]
    nodes["zone_id"] = city.zones_of(nodes["lon"].to_numpy(), nodes["lat"].to_numpy())
    city.nodes = nodes[list(NODE_COLUMNS)]
    return city


def _depots(city: City, zones_m: gpd.GeoDataFrame) -> dict[str, str]:
    """zone_id -> the graph node nearest the centre of each depot-type zone."""
    dz = zones_m[zones_m["zone_type"].isin(DEPOT_TYPES)]
    if not len(dz) or not len(city.nodes):
        return {}
    nm = city.nodes.to_crs(city.metric_crs)
    tree = shapely.STRtree(nm.geometry.values)
    idx = tree.nearest(shapely.point_on_surface(dz.geometry.values))
    ids = nm["node_id"].to_numpy()
    return dict(zip(dz["zone_id"], ids[idx], strict=True))
