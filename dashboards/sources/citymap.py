"""The map's static city model and the sensors' positions.

In: the twin's generated city model; a psycopg connection for sensor positions.  Out: plain
lists (lake ring, zones, segments in model order), packed sensor positions, zone centres.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import psycopg

from twin.citymodel import CENTER_LAT, CENTER_LON

CENTRE = (CENTER_LON, CENTER_LAT)  # lon, lat of the lake centre (the twin's origin)


@lru_cache(maxsize=1)
def city_model() -> dict[str, Any]:
    """The twin's static city model as plain lists: lake ring, zones, segments (model order)."""
    from twin.citymodel import build_city

    city = build_city()
    lake_geom = city.lake.geometry.iloc[0]
    if hasattr(lake_geom, "geoms"):
        lake_geom = max(lake_geom.geoms, key=lambda g: g.area)
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
    return {"lake": _coords(lake_geom.exterior), "zones": zones, "segments": segments}


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
