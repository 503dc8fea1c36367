"""The map's static city model and the sensors' positions.

In: the twin's generated city model; a psycopg connection for sensor positions.  Out: plain
lists (lake ring, zones, segments in model order), packed sensor positions, zone centres.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import psycopg

from citypulse.city.dishui import CENTER_LAT, CENTER_LON

CENTRE = (CENTER_LON, CENTER_LAT)  # lon, lat of the lake centre (the twin's origin)


_ACTIVE: dict[str, Any] = {"key": "dishui@0", "city": None, "checked": 0.0}
CITY_CHECK_S = 10.0


def follow_city(conn: psycopg.Connection, force: bool = False) -> str:
    """Keep the map on the active city model (checked at most every 10 s); its key."""
    import time

    if not force and time.monotonic() - _ACTIVE["checked"] < CITY_CHECK_S:
        return _ACTIVE["key"]
    from citypulse.city.store import active, model_key

    try:
        city = active(conn)
    except psycopg.errors.UndefinedTable:  # not migrated to city models yet
        return _ACTIVE["key"]
    _ACTIVE.update(key=model_key(city), city=city, checked=time.monotonic())
    return _ACTIVE["key"]


def city_model() -> dict[str, Any]:
    """The active city model as plain lists: water, zones, segments (model order), view."""
    return _model_of(_ACTIVE["key"])


@lru_cache(maxsize=2)
def _model_of(key: str) -> dict[str, Any]:
    import shapely

    city = _ACTIVE["city"]
    if city is None:
        from citypulse.city import build_city

        city = build_city()
    water = []
    for g in city.lake.geometry.values:
        parts = list(g.geoms) if hasattr(g, "geoms") else [g]
        water += [_coords(p.exterior) for p in parts if p.geom_type == "Polygon"]
    zones = []
    for z in _records(city.zones):
        g = z["geometry"]
        if hasattr(g, "geoms"):
            g = max(g.geoms, key=lambda p: p.area)
        zones.append({"id": str(z["zone_id"]), "name": str(z.get("name", z["zone_id"])),
                      "type": str(z.get("zone_type", "")), "area_m2": float(z["area_m2"]),
                      "polygon": _coords(g.exterior)})
    segments = []
    for s in _records(city.segments):
        ring = s.get("ring")
        segments.append({
            "id": str(s["segment_id"]), "name": str(s.get("road", "")),
            "ring": f"ring {int(ring)}" if _num(ring) is not None else str(s.get("road_class")),
            "lanes": int(s.get("lanes", 1)), "free_flow_kmh": float(s["free_flow_kmh"]),
            "length_m": float(s.get("length_m", 0)), "path": _coords(s["geometry"])})
    c = shapely.centroid(city.boundary)
    x0, y0, x1, y1 = city.metric("zones").total_bounds
    return {"lake": max(water, key=len) if water else [], "water": water, "zones": zones,
            "segments": segments, "name": city.name, "centre": [round(c.x, 6), round(c.y, 6)],
            "extent_m": round(float(max(x1 - x0, y1 - y0)), 1)}


def _records(frame: Any) -> list[dict]:
    if hasattr(frame, "to_dict"):
        return frame.to_dict("records")
    return [dict(r) for r in frame]


def _coords(geom: Any) -> list[list[float]]:
    return [[round(x, 6), round(y, 6)] for x, y, *_ in geom.coords]


# --- sensors ------------------------------------------------------------------------------
def sensor_positions(conn: psycopg.Connection) -> tuple[int, bytes]:
    """(count, little-endian float32 lon,lat pairs) of every sensor, in id order."""
    import numpy as np

    rows = conn.execute("SELECT lon, lat FROM citypulse.sensors ORDER BY id").fetchall()
    arr = np.asarray(rows, dtype="<f4").reshape(-1, 2) if rows else np.zeros((0, 2), "<f4")
    return len(arr), arr.tobytes()


def unplaceable(conn: psycopg.Connection, limit: int = 200) -> list[dict]:
    """Sensors the placement could not put on the city, with the reason (``/ingest``)."""
    rows = conn.execute(
        """SELECT s.sensor_id, s.kind, s.lon, s.lat, p.reason
           FROM citypulse.sensor_placement p JOIN citypulse.sensors s ON s.id = p.sensor
           WHERE p.status = 'unplaceable' ORDER BY s.sensor_id LIMIT %s""", (limit,)).fetchall()
    return [{"sensor_id": i, "kind": k, "lon": x, "lat": y, "reason": r}
            for i, k, x, y, r in rows]


def offline_positions(conn: psycopg.Connection, limit: int = 5000) -> list[list[float]]:
    """Positions of sensors whose retained status is offline (at most ``limit``)."""
    rows = conn.execute(
        """SELECT s.lon, s.lat FROM citypulse.sensor_status st
           JOIN citypulse.sensors s ON s.sensor_id = st.sensor_id
           WHERE st.status = 'offline' LIMIT %s""", (limit,)).fetchall()
    return [[round(lon, 5), round(lat, 5)] for lon, lat in rows]


def zone_centroids() -> dict[str, list[float]]:
    """zone_id -> [lon, lat] (mean of the outline), for OD arcs."""
    out = {}
    for z in city_model()["zones"]:
        pts = z["polygon"][:-1] or z["polygon"]
        out[z["id"]] = [sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)]
    return out


def _num(v: Any) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f
