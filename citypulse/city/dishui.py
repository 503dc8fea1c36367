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

import geopandas as gpd
import networkx as nx
import numpy as np
import shapely
from pyproj import Transformer
from shapely.geometry import LineString, Polygon
from shapely.ops import unary_union

from citypulse.city.model import (
    DEPOT_TYPES,
    GATE_COLUMNS,
    NODE_COLUMNS,
    SEGMENT_COLUMNS,
    WGS84,
    ZONE_COLUMNS,
    ZONE_TYPES,
    City,
)
from citypulse.city.model import neighbours as neighbours_of

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

    neighbours = neighbours_of(zones_m)
    city = City(seed=seed, lake=lake, segments=segments, zones=zones, nodes=None,
                gates=gates, graph=graph, boundary=boundary, depots=depots,
                zone_neighbours=neighbours, name="dishui", version=0, metric_crs=METRIC_CRS)
    city._cache["metric:zones"] = zones_m[list(ZONE_COLUMNS)]
    ids = city.zones_of(nodes["lon"].to_numpy(), nodes["lat"].to_numpy())
    nodes["zone_id"] = ids
    city.nodes = nodes[list(NODE_COLUMNS)]
    return city


def city_union(city: City) -> shapely.Geometry:
    """Union of all zones (for checks): equals the city disc."""
    return unary_union(list(city.metric("zones").geometry.values))


__all__ = ["City", "build_city", "METRIC_CRS", "WGS84"]
