"""The Dishui Lake city model: lake, ring and radial roads, directed segments, zones.

In: a ``seed`` (0 is the canonical city; other seeds jitter the ring radii by a few per
cent).  Out: a :class:`City` (cached per seed, treat it as read-only) with GeoDataFrames in
EPSG:4326 and a networkx road graph::

    city = build_city()
    city.segments          # one row per DIRECTED road segment
    city.zone_of(121.95, 30.89)
    city.shortest_path("N4.09", "D-PORT")

Geometry is laid out in metres in UTM zone 51N (EPSG:32651) around the lake centre
(30.899 N, 121.929 E) and projected to WGS84; lengths and areas are computed in the metric
CRS.  Layout: the lake (radius 1,350 m), four ring roads (1.6, 2.4, 3.3 and 4.3 km), twelve
radial roads every 30 degrees (bearing 0 = north) from the lakeside ring to the outer ring,
and access roads to depots in the port, logistics park and industrial zones.  Zones are
annular sectors by band and 30-degree sector (the port spans two sectors), with metro
stations and plazas carved out of their districts; together with the lake zone they tile
the city disc (radius 5.2 km) without overlap.  Traffic drives on the right: each
direction's geometry is offset 5 m to its right-hand side, so the two directions of a road
are distinct lines (and the nearest segment to a roadside sensor is its own direction).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer
from shapely.geometry import LineString, Polygon
from shapely.ops import unary_union

WGS84 = "EPSG:4326"
METRIC_CRS = "EPSG:32651"  # UTM zone 51N
CENTER_LON = 121.929
CENTER_LAT = 30.899

LAKE_RADIUS_M = 1350.0
RING_RADII_M = (1600.0, 2400.0, 3300.0, 4300.0)
CITY_RADIUS_M = 5200.0
N_SECTORS = 12
SECTOR_DEG = 360.0 / N_SECTORS
LANE_OFFSET_M = 5.0

RING_NAMES = (
    "Huanhu 1st Ring Rd (lakeside ring)",
    "Huanhu 2nd Ring Rd",
    "Huanhu 3rd Ring Rd",
    "Lingang Outer Ring Rd",
)
RING_LANES = (2, 3, 3, 4)
RING_FREE_FLOW = (40.0, 50.0, 60.0, 70.0)
RADIAL_NAMES = (
    "Shengang Ave N", "Yunjuan Rd", "Haigang Ave", "Chengfeng Rd", "Shuiyun Rd",
    "Luchao Port Rd", "Lingang Ave", "Xuefu Rd", "Nanhui New City Rd", "Huanhu West Rd",
    "Huicheng Rd", "Shengang Ave NW",
)
RADIAL_LANES = 3
RADIAL_FREE_FLOW = 60.0
ACCESS_LANES = 2
ACCESS_FREE_FLOW = 40.0
LANE_CAPACITY_VEH_H = 1800.0  # saturation flow per lane

SECTOR_DIRS = ("NNE", "NE", "ENE", "ESE", "SE", "SSE", "SSW", "SW", "WSW", "WNW", "NW", "NNW")
BAND_NAMES = ("Lake", "Lakeside", "Inner district", "Middle district", "Outer district",
              "Periphery")

# zone_type -> (typical persons per m2 -> people_capacity, density limit persons/1,000 m2)
ZONE_TYPES: dict[str, tuple[float, float]] = {
    "lake": (0.0, 0.0),
    "lakeside": (0.08, 1000.0),
    "commercial": (0.05, 500.0),
    "residential": (0.03, 300.0),
    "education": (0.02, 300.0),
    "industrial": (0.005, 100.0),
    "logistics": (0.003, 100.0),
    "port": (0.002, 50.0),
    "green": (0.002, 50.0),
    "plaza": (0.5, 2000.0),
    "metro_station": (1.0, 3000.0),
}
DEPOT_TYPES = ("port", "logistics", "industrial")

# (band, sector) -> zone type for bands 2..5 (band 1 is all lakeside)
_B2 = ["commercial" if s % 2 == 0 else "residential" for s in range(N_SECTORS)]
_B3 = ["residential"] * N_SECTORS
_B3[2] = "commercial"
_B3[9] = _B3[10] = "education"
_B4 = ["residential"] * N_SECTORS
_B4[1] = _B4[2] = _B4[3] = _B4[5] = "industrial"
_B4[4] = "logistics"
_B4[9] = "green"
_B5 = ["green"] * N_SECTORS
_B5[1] = _B5[2] = _B5[3] = _B5[6] = "industrial"
_B5[4] = _B5[5] = "port"
BAND_TYPES = {2: _B2, 3: _B3, 4: _B4, 5: _B5}
SPECIAL_NAMES = {
    (4, 4): "Lingang Logistics Park",
    (5, 4): "Luchao Port",
    (4, 1): "Lingang Equipment Park NE",
    (4, 2): "Lingang Equipment Park ENE",
    (4, 3): "Lingang Equipment Park ESE",
    (4, 5): "Lingang Equipment Park SSE",
    (5, 1): "Heavy Industry Area NE",
    (5, 2): "Heavy Industry Area ENE",
    (5, 3): "Heavy Industry Area ESE",
    (5, 6): "Heavy Industry Area SSW",
    (3, 9): "Maritime University Campus",
    (3, 10): "Ocean University Campus",
}
# (name, sector, radius m, circle radius m)
METRO_STATIONS = (
    ("Dishui Lake Station", 6, 2150.0, 70.0),
    ("Lingang Ave Station", 3, 2150.0, 60.0),
    ("Shuiyun Rd Station", 0, 2150.0, 60.0),
    ("Xuefu Rd Station", 9, 2150.0, 60.0),
)
PLAZAS = (
    ("Dishui Lake Plaza", 1, 1850.0, 120.0),
    ("Harbour City Plaza", 5, 1850.0, 120.0),
    ("West Island Plaza", 8, 1850.0, 110.0),
)

SEGMENT_COLUMNS = ("segment_id", "from_node", "to_node", "road", "road_class", "ring",
                   "radial", "direction", "lanes", "free_flow_kmh", "capacity_veh_h",
                   "length_m", "geometry")
ZONE_COLUMNS = ("zone_id", "name", "zone_type", "band", "sector", "area_m2",
                "people_capacity", "density_limit_per_1000m2", "depot_node", "geometry")
NODE_COLUMNS = ("node_id", "kind", "ring", "lon", "lat", "zone_id", "geometry")
GATE_COLUMNS = ("gate_id", "zone_id", "name", "lon", "lat", "geometry")


def _xy(r: float, bearing_deg: float) -> tuple[float, float]:
    """Local metric offset (east, north) of a point at radius r and compass bearing."""
    b = math.radians(bearing_deg)
    return r * math.sin(b), r * math.cos(b)


def _arc(r: float, b0: float, b1: float, step_deg: float = 2.0) -> list[tuple[float, float]]:
    """Points along a circle of radius r from bearing b0 to b1 (either direction)."""
    n = max(2, math.ceil(abs(b1 - b0) / step_deg) + 1)
    return [_xy(r, b) for b in np.linspace(b0, b1, n)]


def _annular_sector(r0: float, r1: float, b0: float, b1: float) -> Polygon:
    outer = _arc(r1, b0, b1)
    inner = _arc(r0, b1, b0) if r0 > 0 else [(0.0, 0.0)]
    return Polygon(outer + inner)


def _circle(r: float, step_deg: float = 2.0) -> Polygon:
    return Polygon(_arc(r, 0.0, 360.0 - step_deg, step_deg))


@dataclass(eq=False)
class City:
    """The city model: layers as GeoDataFrames (EPSG:4326), the road graph, lookups.

    Attributes (stable names; see :mod:`twin`):
      ``lake``      GeoDataFrame, one row: name, area_m2, radius_m, geometry (Polygon)
      ``segments``  GeoDataFrame, one row per directed segment: ``SEGMENT_COLUMNS``
      ``zones``     GeoDataFrame: ``ZONE_COLUMNS`` (Polygon), tiling the city disc
      ``nodes``     GeoDataFrame: ``NODE_COLUMNS`` (Point); kind = junction|access|depot
      ``gates``     GeoDataFrame: ``GATE_COLUMNS`` (Point) on metro station boundaries
      ``graph``     networkx.DiGraph: nodes by node_id (lon, lat, kind), edges
                    from_node -> to_node with segment_id, length_m, free_flow_kmh,
                    travel_time_s, lanes, capacity_veh_h
      ``boundary``  the city disc (shapely Polygon, EPSG:4326)
      ``depots``    dict zone_id -> depot node_id for port, logistics and industrial zones
      ``zone_neighbours`` tuple of (zone_id, zone_id) pairs sharing a border (a < b)
    """

    seed: int
    lake: gpd.GeoDataFrame
    segments: gpd.GeoDataFrame
    zones: gpd.GeoDataFrame
    nodes: gpd.GeoDataFrame
    gates: gpd.GeoDataFrame
    graph: nx.DiGraph
    boundary: Polygon
    depots: dict[str, str]
    zone_neighbours: tuple[tuple[str, str], ...]
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    # --- metric views ------------------------------------------------------------------
    def metric(self, layer: str) -> gpd.GeoDataFrame:
        """The layer (``lake``/``segments``/``zones``/``nodes``/``gates``) in EPSG:32651."""
        key = "metric:" + layer
        if key not in self._cache:
            self._cache[key] = getattr(self, layer).to_crs(METRIC_CRS)
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
        """WGS84 lon/lat (scalars or arrays) to UTM 51N metres."""
        return _TO_M.transform(np.asarray(lon, dtype=float), np.asarray(lat, dtype=float))

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
        """Node ids of the fastest (or ``weight='length_m'``: shortest) path from a to b."""
        return nx.shortest_path(self.graph, a, b, weight=weight)

    def path_segments(self, a: str, b: str, weight: str = "travel_time_s") -> list[str]:
        """Segment ids along :meth:`shortest_path` from a to b."""
        nodes = self.shortest_path(a, b, weight)
        return [self.graph.edges[u, v]["segment_id"] for u, v in zip(nodes, nodes[1:], strict=False)]

    def point_along(self, segment_id: str, fraction: float = 0.5) -> tuple[float, float]:
        """(lon, lat) of the point at ``fraction`` of a segment's length (on its lane)."""
        geom = self.metric("segments").set_index("segment_id").geometry[segment_id]
        p = geom.interpolate(fraction, normalized=True)
        lon, lat = _TO_WGS.transform(p.x, p.y)
        return float(lon), float(lat)

    def layers(self) -> gpd.GeoDataFrame:
        """All layers in one GeoDataFrame (EPSG:4326) with a ``layer`` column."""
        parts = [
            self.lake.assign(layer="lake"),
            self.zones.assign(layer="zone"),
            self.segments.assign(layer="road_segment"),
            self.nodes.assign(layer="node"),
            self.gates.assign(layer="gate"),
        ]
        df = pd.concat(parts, ignore_index=True)
        cols = ["layer"] + [c for c in df.columns if c not in ("layer", "geometry")] + ["geometry"]
        return gpd.GeoDataFrame(df[cols], geometry="geometry", crs=WGS84)


_TO_M = Transformer.from_crs(WGS84, METRIC_CRS, always_xy=True)
_TO_WGS = Transformer.from_crs(METRIC_CRS, WGS84, always_xy=True)


class _Builder:
    """Lays the city out in local metres, then places it at the lake centre."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        jitter = 1.0 + (rng.uniform(-0.03, 0.03, len(RING_RADII_M)) if seed else 0.0)
        self.rings = tuple(float(r) for r in np.asarray(RING_RADII_M) * jitter)
        self.bands = (0.0, LAKE_RADIUS_M) + self.rings + (CITY_RADIUS_M,)
        cx, cy = _TO_M.transform(CENTER_LON, CENTER_LAT)
        self.cx, self.cy = cx, cy
        # node angles per ring in half-sectors (even = radial, odd = access road)
        self.ring_positions: dict[int, set[int]] = {
            i: set(range(0, 2 * N_SECTORS, 2)) for i in range(len(self.rings))}
        self.nodes: dict[str, dict] = {}
        self.segments: list[dict] = []

    # --- helpers -------------------------------------------------------------------------
    def shift(self, pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
        return [(x + self.cx, y + self.cy) for x, y in pts]

    @staticmethod
    def node_id(ring: int, pos: int) -> str:
        return f"N{ring + 1}.{pos:02d}"

    def add_node(self, nid: str, xy: tuple[float, float], kind: str, ring: int | None) -> None:
        self.nodes[nid] = {"node_id": nid, "kind": kind, "ring": ring,
                           "x": xy[0] + self.cx, "y": xy[1] + self.cy}

    def add_road(self, a: str, b: str, centre: list[tuple[float, float]], road: str, cls: str,
                 ring: int | None, radial: int | None, lanes: int, ff: float,
                 directions: tuple[str, str]) -> None:
        """Two directed segments a->b and b->a along ``centre`` (local metres, a to b)."""
        line = LineString(self.shift(centre))
        length = float(line.length)
        fwd = line.offset_curve(-LANE_OFFSET_M)  # negative = right-hand side
        back = LineString(self.shift(centre[::-1])).offset_curve(-LANE_OFFSET_M)
        for (u, v, geom, d) in ((a, b, fwd, directions[0]), (b, a, back, directions[1])):
            self.segments.append({
                "segment_id": f"{u}>{v}", "from_node": u, "to_node": v, "road": road,
                "road_class": cls, "ring": ring, "radial": radial, "direction": d,
                "lanes": lanes, "free_flow_kmh": ff,
                "capacity_veh_h": lanes * LANE_CAPACITY_VEH_H, "length_m": length,
                "geometry": geom})

    # --- layout --------------------------------------------------------------------------
    def zone_specs(self) -> list[dict]:
        """Zones as annular sectors by band; the port merges two sectors."""
        specs = [{"zone_id": "Z-LAKE", "name": "Dishui Lake", "zone_type": "lake",
                  "band": 0, "sector": None,
                  "geometry": Polygon(self.shift(_circle(self.bands[1]).exterior.coords[:-1]))}]
        for band in range(1, len(self.bands) - 1):
            r0, r1 = self.bands[band], self.bands[band + 1]
            s = 0
            while s < N_SECTORS:
                ztype = "lakeside" if band == 1 else BAND_TYPES[band][s]
                span = 1
                if ztype == "port":
                    while s + span < N_SECTORS and BAND_TYPES[band][s + span] == "port":
                        span += 1
                zid = "Z-PORT" if ztype == "port" else f"Z{band}-{s:02d}"
                name = SPECIAL_NAMES.get((band, s), f"{BAND_NAMES[band]} {SECTOR_DIRS[s]}")
                poly = _annular_sector(r0, r1, s * SECTOR_DEG, (s + span) * SECTOR_DEG)
                specs.append({"zone_id": zid, "name": name, "zone_type": ztype, "band": band,
                              "sector": s, "span": span, "geometry": poly})
                s += span
        return specs

    def carve(self, specs: list[dict]) -> tuple[list[dict], list[dict]]:
        """Cut metro stations and plazas out of their districts; return zones and gates."""
        extra, gates = [], []
        for kind, table in (("metro_station", METRO_STATIONS), ("plaza", PLAZAS)):
            for i, (name, sector, radius, size) in enumerate(table):
                b = (sector + 0.5) * SECTOR_DEG
                cx, cy = _xy(radius, b)
                poly = Polygon([(cx + x, cy + y) for x, y in _circle(size, 10.0).exterior.coords])
                prefix = "ZM" if kind == "metro_station" else "ZP"
                zid = f"{prefix}-{i + 1:02d}"
                extra.append({"zone_id": zid, "name": name, "zone_type": kind,
                              "band": None, "sector": sector, "geometry": poly})
                if kind == "metro_station":
                    for g, gb in enumerate((b + 180.0, b, b + 90.0)):
                        gx, gy = _xy(size, gb)
                        gates.append({"gate_id": f"{zid}-G{g + 1}", "zone_id": zid,
                                      "name": f"{name} gate {g + 1}",
                                      "x": cx + gx + self.cx, "y": cy + gy + self.cy})
        for z in specs:
            if z["band"] == 0:
                continue
            g = z["geometry"]
            for e in extra:
                if g.contains(e["geometry"]):
                    g = g.difference(e["geometry"])
            z["geometry"] = Polygon(self.shift(list(g.exterior.coords)),
                                    [self.shift(list(h.coords)) for h in g.interiors])
        for e in extra:
            e["geometry"] = Polygon(self.shift(list(e["geometry"].exterior.coords)))
        return specs + extra, gates

    def roads(self, depot_zones: list[dict]) -> dict[str, str]:
        """Rings, radials and access roads to depots; returns zone_id -> depot node."""
        depots = {}
        for z in depot_zones:
            band, s, span = z["band"], z["sector"], z.get("span", 1)
            pos = 2 * s + span  # half-sector position of the zone's mid bearing
            inner_ring = band - 2  # the ring on the band's inner edge
            self.ring_positions[inner_ring].add(pos % (2 * N_SECTORS))
            depots[z["zone_id"]] = (inner_ring, pos % (2 * N_SECTORS),
                                    (self.bands[band] + self.bands[band + 1]) / 2)
        half = SECTOR_DEG / 2
        for ring, positions in self.ring_positions.items():
            r = self.rings[ring]
            for p in positions:
                kind = "junction" if p % 2 == 0 else "access"
                self.add_node(self.node_id(ring, p), _xy(r, p * half), kind, ring + 1)
            ps = sorted(positions)
            for p, q in zip(ps, ps[1:] + [ps[0] + 2 * N_SECTORS], strict=True):
                self.add_road(self.node_id(ring, p), self.node_id(ring, q % (2 * N_SECTORS)),
                              _arc(r, p * half, q * half), RING_NAMES[ring], "ring", ring + 1,
                              None, RING_LANES[ring], RING_FREE_FLOW[ring], ("cw", "ccw"))
        for k in range(N_SECTORS):
            b = k * SECTOR_DEG
            for ring in range(len(self.rings) - 1):
                a, c = self.node_id(ring, 2 * k), self.node_id(ring + 1, 2 * k)
                self.add_road(a, c, [_xy(self.rings[ring], b), _xy(self.rings[ring + 1], b)],
                              RADIAL_NAMES[k], "radial", None, k, RADIAL_LANES,
                              RADIAL_FREE_FLOW, ("out", "in"))
        out = {}
        for zid, (ring, pos, r) in depots.items():
            b = pos * half
            did = f"D-{zid.removeprefix('Z-')}" if zid.startswith("Z-") else f"D-{zid[1:]}"
            self.add_node(did, _xy(r, b), "depot", None)
            self.add_road(self.node_id(ring, pos), did, [_xy(self.rings[ring], b), _xy(r, b)],
                          f"{zid} access road", "access", None, None, ACCESS_LANES,
                          ACCESS_FREE_FLOW, ("out", "in"))
            out[zid] = did
        return out


def _to_wgs(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    return gdf.set_crs(METRIC_CRS).to_crs(WGS84)


def build_city(seed: int = 0) -> City:
    """Build (once per seed, then cached) the Dishui Lake city model.

    Deterministic: the same seed gives the same ids, attributes and geometry.  The result
    is shared between callers: treat its frames as read-only (copy before changing).
    Takes about 0.05 s (plus importing geopandas) the first time.
    """
    return _build_cached(int(seed))


@functools.lru_cache(maxsize=4)
def _build_cached(seed: int) -> City:
    return _build(seed)


def _build(seed: int) -> City:
    b = _Builder(seed)
    specs = b.zone_specs()
    depot_zones = [z for z in specs if z["zone_type"] in DEPOT_TYPES]
    depots = b.roads(depot_zones)
    zone_rows, gate_rows = b.carve(specs)

    zones_m = gpd.GeoDataFrame(zone_rows, geometry="geometry", crs=METRIC_CRS)
    zones_m["area_m2"] = zones_m.geometry.area
    per_m2 = zones_m["zone_type"].map(lambda t: ZONE_TYPES[t][0])
    zones_m["people_capacity"] = (zones_m["area_m2"] * per_m2).round().astype("int64")
    zones_m["density_limit_per_1000m2"] = zones_m["zone_type"].map(lambda t: ZONE_TYPES[t][1])
    zones_m["depot_node"] = zones_m["zone_id"].map(depots)
    zones_m["band"] = zones_m["band"].astype("Int64")
    zones_m["sector"] = zones_m["sector"].astype("Int64")
    zones = zones_m[list(ZONE_COLUMNS)].to_crs(WGS84)

    lake_m = gpd.GeoDataFrame(
        [{"name": "Dishui Lake", "radius_m": LAKE_RADIUS_M,
          "geometry": zones_m.loc[zones_m.zone_id == "Z-LAKE", "geometry"].iloc[0]}],
        geometry="geometry", crs=METRIC_CRS)
    lake_m["area_m2"] = lake_m.geometry.area
    lake = lake_m[["name", "area_m2", "radius_m", "geometry"]].to_crs(WGS84)

    segments = gpd.GeoDataFrame(b.segments, geometry="geometry", crs=METRIC_CRS)
    segments["ring"] = segments["ring"].astype("Int64")
    segments["radial"] = segments["radial"].astype("Int64")
    segments = segments[list(SEGMENT_COLUMNS)].to_crs(WGS84)

    nodes_m = gpd.GeoDataFrame(
        list(b.nodes.values()), geometry=shapely.points(
            [n["x"] for n in b.nodes.values()], [n["y"] for n in b.nodes.values()]),
        crs=METRIC_CRS)
    nodes = nodes_m.to_crs(WGS84)
    nodes["lon"], nodes["lat"] = nodes.geometry.x, nodes.geometry.y
    nodes["ring"] = nodes["ring"].astype("Int64")

    gates_m = gpd.GeoDataFrame(gate_rows, geometry=shapely.points(
        [g["x"] for g in gate_rows], [g["y"] for g in gate_rows]), crs=METRIC_CRS)
    gates = gates_m.to_crs(WGS84)
    gates["lon"], gates["lat"] = gates.geometry.x, gates.geometry.y
    gates = gates[list(GATE_COLUMNS)]

    graph = nx.DiGraph()
    for n in nodes.itertuples(index=False):
        graph.add_node(n.node_id, lon=n.lon, lat=n.lat, kind=n.kind)
    for s in segments.itertuples(index=False):
        graph.add_edge(s.from_node, s.to_node, segment_id=s.segment_id, length_m=s.length_m,
                       free_flow_kmh=s.free_flow_kmh, lanes=s.lanes,
                       capacity_veh_h=s.capacity_veh_h,
                       travel_time_s=s.length_m / (s.free_flow_kmh / 3.6))

    city_m = Polygon(b.shift(_circle(CITY_RADIUS_M).exterior.coords[:-1]))
    boundary = _to_wgs(gpd.GeoDataFrame(geometry=[city_m])).geometry.iloc[0]

    neighbours = _neighbours(zones_m)
    city = City(seed=seed, lake=lake, segments=segments, zones=zones, nodes=None,
                gates=gates, graph=graph, boundary=boundary, depots=depots,
                zone_neighbours=neighbours)
    city._cache["metric:zones"] = zones_m[list(ZONE_COLUMNS)]
    ids = city.zones_of(nodes["lon"].to_numpy(), nodes["lat"].to_numpy())
    nodes["zone_id"] = ids
    city.nodes = nodes[list(NODE_COLUMNS)]
    return city


def _neighbours(zones_m: gpd.GeoDataFrame) -> tuple[tuple[str, str], ...]:
    """Pairs of zones sharing a border longer than 1 m."""
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


def city_union(city: City) -> shapely.Geometry:
    """Union of all zones (for checks): equals the city disc."""
    return unary_union(list(city.metric("zones").geometry.values))


def export(city: City, path: str, fmt: str = "geojson") -> int:
    """Write every layer to ``path`` (GeoJSON FeatureCollection or GeoParquet); return features."""
    df = city.layers()
    if fmt == "geoparquet":
        for col in ("ring", "radial", "band", "sector"):
            if col in df:
                df[col] = df[col].astype("float64")
        df.to_parquet(path, index=False)
    elif fmt == "geojson":
        import json

        features = []
        for row, geom in zip(df.drop(columns="geometry").to_dict("records"),
                             df.geometry.values, strict=True):
            props = {k: _plain(v) for k, v in row.items() if not _missing(v)}
            features.append({"type": "Feature", "properties": props,
                             "geometry": shapely.geometry.mapping(geom)})
        with open(path, "w", encoding="utf-8") as fh:
            json.dump({"type": "FeatureCollection", "features": features}, fh,
                      separators=(",", ":"))
    else:
        raise ValueError(f"unknown format {fmt!r}; use geojson or geoparquet")
    return len(df)


def _missing(v: Any) -> bool:
    try:
        return v is None or bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v


__all__ = ["City", "build_city", "export", "METRIC_CRS", "WGS84"]
