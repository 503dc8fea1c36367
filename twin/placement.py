"""Placement: join every registered sensor to its road segment or zone.

In: a psycopg connection to a migrated store (``citypulse.sensors``) and the city model.
Out: ``citypulse.sensor_placement`` filled for every sensor not placed yet (or moved since),
the city's segments and zones copied to ``citypulse.twin_segments``/``twin_zones``, and a
:class:`PlacementReport` naming the sensors that could not be placed::

    report = place_sensors(conn, tolerance_m=25)
    report.unplaceable   # ((sensor_id, kind, reason), ...)

Rules, by the catalogue's ``Kind.placement``: ``segment`` kinds go to the nearest directed
segment within ``tolerance_m`` metres (STRtree on the metric CRS), ``zone`` and ``point``
kinds to the zone containing them (point in polygon; a people counter within 15 m of a metro
gate also gets its ``gate_id``), ``vehicle`` kinds are mobile (placed
per minute from their positions).  A sensor outside the city, too far from every road or
of an unknown kind is recorded as ``unplaceable`` with the reason, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import psycopg
import shapely

from citypulse.catalogue import DEVICE_KINDS as KINDS
from twin.citymodel import City, build_city

_PENDING = """
SELECT s.id, s.sensor_id, s.kind, s.lon, s.lat
FROM citypulse.sensors s
LEFT JOIN citypulse.sensor_placement p ON p.sensor = s.id
WHERE p.sensor IS NULL OR p.placed_at < s.updated_at OR %(all)s
ORDER BY s.id
"""

_UPSERT = """
INSERT INTO citypulse.sensor_placement
    (sensor, placement, status, segment_id, zone_id, distance_m, reason, placed_at, gate_id)
SELECT sensor, placement, status, segment_id, zone_id, distance_m, reason, placed_at, gate_id
FROM _place_stage
ON CONFLICT (sensor) DO UPDATE SET placement = EXCLUDED.placement, status = EXCLUDED.status,
    segment_id = EXCLUDED.segment_id, zone_id = EXCLUDED.zone_id,
    distance_m = EXCLUDED.distance_m, reason = EXCLUDED.reason, placed_at = EXCLUDED.placed_at,
    gate_id = EXCLUDED.gate_id
"""

GATE_RADIUS_M = 15.0


def _gates_near(city: City, lon: np.ndarray, lat: np.ndarray, radius_m: float) -> np.ndarray:
    """gate_id of the gate within ``radius_m`` of each point (None when none is)."""
    gm = city.metric("gates")
    out = np.full(len(lon), None, dtype=object)
    if not len(gm):
        return out
    x, y = city.to_metric(lon, lat)
    pts = shapely.points(x, y)
    tree = shapely.STRtree(gm.geometry.values)
    i_pt, i_gate = tree.query_nearest(pts, max_distance=radius_m, all_matches=False)
    out[i_pt] = gm["gate_id"].to_numpy()[i_gate]
    return out


@dataclass(frozen=True)
class PlacementReport:
    """What one placement pass did."""

    examined: int
    on_segment: int
    in_zone: int
    mobile: int
    unplaceable: tuple[tuple[str, str, str], ...]  # (sensor_id, kind, reason)

    def as_dict(self) -> dict:
        """JSON-friendly summary (first 20 unplaceable sensors listed)."""
        return {"examined": self.examined, "on_segment": self.on_segment,
                "in_zone": self.in_zone, "mobile": self.mobile,
                "unplaceable": len(self.unplaceable),
                "unplaceable_sample": [list(u) for u in self.unplaceable[:20]]}


def sync_city(conn: psycopg.Connection, city: City) -> None:
    """Copy the city's segments, zones and zone neighbours into the twin tables."""
    seg = city.segments
    zones = city.zones
    mids = shapely.line_interpolate_point(seg.geometry.values, 0.5, normalized=True)
    seg_zone = city.zones_of(shapely.get_x(mids), shapely.get_y(mids))
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO citypulse.twin_segments (segment_id, from_node, to_node, road,
                   road_class, direction, lanes, free_flow_kmh, capacity_veh_h, length_m,
                   geom_wkt, zone_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (segment_id) DO UPDATE SET from_node = EXCLUDED.from_node,
                   to_node = EXCLUDED.to_node, road = EXCLUDED.road,
                   road_class = EXCLUDED.road_class, direction = EXCLUDED.direction,
                   lanes = EXCLUDED.lanes, free_flow_kmh = EXCLUDED.free_flow_kmh,
                   capacity_veh_h = EXCLUDED.capacity_veh_h, length_m = EXCLUDED.length_m,
                   geom_wkt = EXCLUDED.geom_wkt, zone_id = EXCLUDED.zone_id""",
            [(s.segment_id, s.from_node, s.to_node, s.road, s.road_class, s.direction,
              int(s.lanes), float(s.free_flow_kmh), float(s.capacity_veh_h),
              float(s.length_m), s.geometry.wkt, z)
             for s, z in zip(seg.itertuples(index=False), seg_zone, strict=True)])
        cur.executemany(
            """INSERT INTO citypulse.twin_zones (zone_id, name, zone_type, area_m2,
                   people_capacity, density_limit, geom_wkt)
               VALUES (%s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (zone_id) DO UPDATE SET name = EXCLUDED.name,
                   zone_type = EXCLUDED.zone_type, area_m2 = EXCLUDED.area_m2,
                   people_capacity = EXCLUDED.people_capacity,
                   density_limit = EXCLUDED.density_limit, geom_wkt = EXCLUDED.geom_wkt""",
            [(z.zone_id, z.name, z.zone_type, float(z.area_m2), int(z.people_capacity),
              float(z.density_limit_per_1000m2), z.geometry.wkt)
             for z in zones.itertuples(index=False)])
        cur.executemany(
            "INSERT INTO citypulse.twin_zone_neighbours (zone_a, zone_b) VALUES (%s, %s) "
            "ON CONFLICT DO NOTHING", list(city.zone_neighbours))


def place_sensors(conn: psycopg.Connection, city: City | None = None,
                  tolerance_m: float = 25.0, replace_all: bool = False) -> PlacementReport:
    """Place every sensor not placed yet (or all, with ``replace_all``); see the module doc."""
    city = city or build_city()
    sync_city(conn, city)
    rows = conn.execute(_PENDING, {"all": replace_all}).fetchall()
    now = datetime.now(UTC)
    if not rows:
        return PlacementReport(0, 0, 0, 0, ())
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    names = [r[1] for r in rows]
    kinds = np.array([r[2] for r in rows], dtype=object)
    lon = np.array([r[3] for r in rows], dtype=float)
    lat = np.array([r[4] for r in rows], dtype=float)
    how = np.array([KINDS[k].placement if k in KINDS else "unknown" for k in kinds],
                   dtype=object)
    zone = city.zones_of(lon, lat)
    seg = np.full(len(rows), None, dtype=object)
    dist = np.full(len(rows), np.nan)
    on_seg = how == "segment"
    if on_seg.any():
        seg[on_seg], dist[on_seg] = city.nearest_segments(lon[on_seg], lat[on_seg], tolerance_m)
    status = np.full(len(rows), "placed", dtype=object)
    reason = np.full(len(rows), "", dtype=object)
    status[how == "vehicle"] = "mobile"
    bad_seg = on_seg & (seg == None)  # noqa: E711 - elementwise on an object array
    reason[bad_seg] = f"no road segment within {tolerance_m:g} m"
    bad_zone = np.isin(how, ("zone", "point")) & (zone == None)  # noqa: E711
    reason[bad_zone] = "outside the city"
    unknown = how == "unknown"
    reason[unknown] = "unknown sensor kind"
    bad = bad_seg | bad_zone | unknown
    status[bad] = "unplaceable"
    gate = np.full(len(rows), None, dtype=object)
    at_gate = (kinds == "people") & ~bad
    if at_gate.any():
        gate[at_gate] = _gates_near(city, lon[at_gate], lat[at_gate], GATE_RADIUS_M)
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS _place_stage (sensor int, placement text, "
                    "status text, segment_id text, zone_id text, distance_m float8, "
                    "reason text, placed_at timestamptz, gate_id text) ON COMMIT DELETE ROWS")
        with cur.copy("COPY _place_stage FROM STDIN") as copy:
            for i in range(len(rows)):
                d = None if np.isnan(dist[i]) else float(dist[i])
                z = None if how[i] == "vehicle" else zone[i]
                copy.write_row((int(ids[i]), how[i], status[i], seg[i], z, d, reason[i], now,
                                gate[i]))
        cur.execute(_UPSERT)
    unplaceable = tuple((names[i], kinds[i], reason[i]) for i in np.flatnonzero(bad))
    return PlacementReport(
        examined=len(rows), on_segment=int((on_seg & ~bad).sum()),
        in_zone=int((np.isin(how, ("zone", "point")) & ~bad).sum()),
        mobile=int((how == "vehicle").sum()), unplaceable=unplaceable)
