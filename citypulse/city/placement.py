"""Placement: where each sensor is on the active city model - the one source of it.

In: a connection to a migrated store (``citypulse.sensors``) and a city model.  Out:
``citypulse.sensor_placement`` rows (segment, zone, gate, direction, role, coverage, the
city model it was placed on) for every sensor not placed yet, moved since, or placed on
another city model, and a :class:`PlacementReport` naming the sensors that could not be
placed, with the reason::

    report = place_sensors(conn, city, tolerance_m=25)
    report.unplaceable   # ((sensor_id, kind, reason), ...)

:func:`place` is the pure, vectorised rule (analytics uses it for sensors not placed yet):
``segment`` kinds go to the nearest directed segment within ``tolerance_m`` (its
``direction`` comes along); every fixed sensor gets the zone containing it; a people counter
within 15 m of a gate gets the gate (role ``gate``, else ``zone``); a water gauge within
50 m of a water body is a ``lake_level`` gauge, within ``tolerance_m`` of a road a ``drain``,
else a ``rain`` gauge; a counter covers its zone's area up to 10,000 m2.  Registry
``props`` (``segment_id``, ``zone_id``, ``role``, ``direction``, ``area_m2``/``coverage_m2``)
override any of these; none is required.  Outside every zone, too far from a road, or of an
unknown kind: ``unplaceable`` with the reason, never guessed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
import shapely

from citypulse.catalogue import DEVICE_KINDS as KINDS
from citypulse.city.model import City

GATE_RADIUS_M = 15.0
LAKE_GAUGE_M = 50.0
COVERAGE_M2 = 10_000.0
ROLE_BY_KIND = {"traffic": "loop", "logistics": "tracker", "fire": "detector",
                "air": "station", "gas": "station", "noise": "station"}
OVERRIDES = ("segment_id", "zone_id", "role", "direction", "gate_id")

_PENDING = """
SELECT s.id, s.sensor_id, s.kind, s.lon, s.lat, s.props::text
FROM citypulse.sensors s
LEFT JOIN citypulse.sensor_placement p ON p.sensor = s.id
WHERE p.sensor IS NULL OR p.placed_at < s.updated_at OR %(all)s
   OR p.city_model IS DISTINCT FROM %(model)s
ORDER BY s.id
"""

_UPSERT = """
INSERT INTO citypulse.sensor_placement (sensor, placement, status, segment_id, zone_id,
    distance_m, reason, placed_at, gate_id, direction, role, coverage_m2, city_model)
SELECT sensor, placement, status, segment_id, zone_id, distance_m, reason, placed_at, gate_id,
    direction, role, coverage_m2, city_model FROM _place_stage
ON CONFLICT (sensor) DO UPDATE SET placement = EXCLUDED.placement, status = EXCLUDED.status,
    segment_id = EXCLUDED.segment_id, zone_id = EXCLUDED.zone_id,
    distance_m = EXCLUDED.distance_m, reason = EXCLUDED.reason, placed_at = EXCLUDED.placed_at,
    gate_id = EXCLUDED.gate_id, direction = EXCLUDED.direction, role = EXCLUDED.role,
    coverage_m2 = EXCLUDED.coverage_m2, city_model = EXCLUDED.city_model
"""


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


def _near(city: City, layer: str, key: str, lon: np.ndarray, lat: np.ndarray,
          radius_m: float) -> np.ndarray:
    """``key`` of the ``layer`` feature within ``radius_m`` of each point (None if none)."""
    gm = city.metric(layer)
    out = np.full(len(lon), None, dtype=object)
    if not len(gm) or not len(lon):
        return out
    x, y = city.to_metric(lon, lat)
    geoms = gm.geometry.values
    if layer == "lake":
        geoms = shapely.boundary(geoms)
    tree = shapely.STRtree(geoms)
    i_pt, i_f = tree.query_nearest(shapely.points(x, y), max_distance=radius_m,
                                   all_matches=False)
    out[i_pt] = (gm[key].to_numpy() if key in gm else np.arange(len(gm)).astype(str))[i_f]
    return out


def place(city: City, kinds: np.ndarray, lon: np.ndarray, lat: np.ndarray,
          props: list[dict] | None = None, tolerance_m: float = 25.0) -> dict[str, np.ndarray]:
    """Placement columns (arrays) for sensors at lon/lat; see the module doc."""
    n = len(kinds)
    kinds = np.asarray(kinds, dtype=object)
    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    how = np.array([KINDS[k].placement if k in KINDS else "unknown" for k in kinds], dtype=object)
    out = {c: np.full(n, None, dtype=object) for c in ("segment_id", "zone_id", "gate_id",
                                                      "direction", "role")}
    out["distance_m"] = np.full(n, np.nan)
    out["coverage_m2"] = np.full(n, np.nan)
    out["placement"] = how
    fixed = how != "vehicle"
    out["zone_id"][fixed] = city.zones_of(lon[fixed], lat[fixed]) if fixed.any() else []
    on_seg = how == "segment"
    if on_seg.any():
        out["segment_id"][on_seg], out["distance_m"][on_seg] = city.nearest_segments(
            lon[on_seg], lat[on_seg], tolerance_m)
    for k, role in ROLE_BY_KIND.items():
        out["role"][kinds == k] = role
    ppl = kinds == "people"
    if ppl.any():
        gate = _near(city, "gates", "gate_id", lon[ppl], lat[ppl], GATE_RADIUS_M)
        out["gate_id"][ppl] = gate
        out["role"][ppl] = np.where(gate == None, "zone", "gate")  # noqa: E711
    wtr = kinds == "water"
    if wtr.any():
        lake = _near(city, "lake", "name", lon[wtr], lat[wtr], LAKE_GAUGE_M) != None  # noqa: E711
        road, _ = city.nearest_segments(lon[wtr], lat[wtr], tolerance_m)
        out["role"][wtr] = np.where(lake, "lake_level", np.where(road != None,  # noqa: E711
                                                                   "drain", "rain"))
    if props is not None:
        _override(out, props)
    seg_dir = dict(zip(city.segments["segment_id"], city.segments["direction"], strict=True))
    has_seg = out["segment_id"] != None  # noqa: E711
    no_dir = has_seg & (out["direction"] == None)  # noqa: E711
    out["direction"][no_dir] = [seg_dir.get(s) for s in out["segment_id"][no_dir]]
    zarea = dict(zip(city.zones["zone_id"], city.zones["area_m2"], strict=True))
    need = ppl & np.isnan(out["coverage_m2"]) & (out["zone_id"] != None)  # noqa: E711
    out["coverage_m2"][need] = [min(zarea.get(z, COVERAGE_M2), COVERAGE_M2)
                                for z in out["zone_id"][need]]
    reason = np.full(n, "", dtype=object)
    reason[on_seg & ~has_seg] = f"no road segment within {tolerance_m:g} m"
    reason[fixed & (out["zone_id"] == None)] = "outside every zone of the city"  # noqa: E711
    reason[how == "unknown"] = "unknown sensor kind"
    status = np.where(how == "vehicle", "mobile", "placed").astype(object)
    status[reason != ""] = "unplaceable"
    out["status"], out["reason"] = status, reason
    return out


def _override(out: dict[str, np.ndarray], props: list[dict]) -> None:
    for i, p in enumerate(props):
        if not p:
            continue
        for key in OVERRIDES:
            v = p.get(key)
            if v is not None and v != "":
                out[key][i] = str(v)
        cov = p.get("coverage_m2", p.get("area_m2"))
        if cov is not None:
            try:
                out["coverage_m2"][i] = float(cov)
            except (TypeError, ValueError):
                pass


def sync_city(conn: psycopg.Connection, city: City) -> None:
    """Make ``twin_segments``, ``twin_zones`` and their neighbours the city's (only)."""
    seg, zones = city.segments, city.zones
    mids = shapely.line_interpolate_point(seg.geometry.values, 0.5, normalized=True)
    seg_zone = city.zones_of(shapely.get_x(mids), shapely.get_y(mids))
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("DELETE FROM citypulse.twin_segments WHERE NOT segment_id = ANY(%s)",
                    (list(seg["segment_id"]),))
        cur.execute("DELETE FROM citypulse.twin_zones WHERE NOT zone_id = ANY(%s)",
                    (list(zones["zone_id"]),))
        cur.execute("DELETE FROM citypulse.twin_zone_neighbours")
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
    """Place every sensor not placed on ``city`` yet (or all, with ``replace_all``)."""
    from citypulse.city.store import active, model_key

    city = city or active(conn)
    key = model_key(city)
    synced = conn.execute("SELECT count(*) FROM citypulse.sensor_placement "
                          "WHERE city_model IS DISTINCT FROM %s", (key,)).fetchone()[0]
    if synced or replace_all or not conn.execute(
            "SELECT EXISTS (SELECT 1 FROM citypulse.twin_segments)").fetchone()[0]:
        sync_city(conn, city)
    rows = conn.execute(_PENDING, {"all": replace_all, "model": key}).fetchall()
    if not rows:
        return PlacementReport(0, 0, 0, 0, ())
    props = [json.loads(r[5]) if r[5] else {} for r in rows]
    kinds = np.array([r[2] for r in rows], dtype=object)
    p = place(city, kinds, np.array([r[3] for r in rows], float),
              np.array([r[4] for r in rows], float), props, tolerance_m)
    now = datetime.now(UTC)
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS _place_stage (sensor int, placement text, "
                    "status text, segment_id text, zone_id text, distance_m float8, "
                    "reason text, placed_at timestamptz, gate_id text, direction text, "
                    "role text, coverage_m2 float8, city_model text) ON COMMIT DELETE ROWS")
        with cur.copy("COPY _place_stage FROM STDIN") as copy:
            for i, r in enumerate(rows):
                copy.write_row((r[0], p["placement"][i], p["status"][i], p["segment_id"][i],
                                p["zone_id"][i], _num(p["distance_m"][i]), p["reason"][i], now,
                                p["gate_id"][i], p["direction"][i], p["role"][i],
                                _num(p["coverage_m2"][i]), key))
        cur.execute(_UPSERT)
    bad = p["status"] == "unplaceable"
    how = p["placement"]
    return PlacementReport(
        examined=len(rows), on_segment=int(((how == "segment") & ~bad).sum()),
        in_zone=int((np.isin(how, ("zone", "point")) & ~bad).sum()),
        mobile=int((how == "vehicle").sum()),
        unplaceable=tuple((rows[i][1], rows[i][2], p["reason"][i]) for i in np.flatnonzero(bad)))


def _num(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)
