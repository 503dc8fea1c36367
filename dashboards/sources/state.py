"""The live state on the map: segments, zones, OD flows, and the map's per-refresh state.

In: a psycopg connection and a time.  Out: per-segment speed/flow/congestion, per-zone
people and density, OD flows -- the twin's aggregated state when it has data for that
time, else computed from raw readings -- and :func:`map_state`, aligned with the city
model's order.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from citypulse.catalogue import columns
from citypulse.formulas import DEFAULT_FREE_FLOW_KMH, congestion_index, density_per_1000m2
from dashboards.sources.alerts import alerts_open_at, list_alerts
from dashboards.sources.citymap import (
    _num,
    city_model,
    follow_city,
    offline_positions,
    zone_centroids,
)
from dashboards.sources.colours import band_index, congestion_bands, density_rgba, severity_rgb

STATE_WINDOW = timedelta(minutes=5)
_T, _P = columns("traffic"), columns("people")  # raw value columns, from the catalogue


def _twin_rows(fn_name: str, conn: psycopg.Connection, at: datetime) -> list[dict] | None:
    """Rows of ``twin.state.<fn_name>`` at ``at``, or None when the twin has no data then."""
    try:
        from twin import state as twin_state
    except ImportError:
        return None
    try:
        st = getattr(twin_state, fn_name)(conn, at)
    except psycopg.errors.UndefinedTable:
        return None
    if st.bucket is None or not st.rows:
        return None
    return list(st.rows)


def segment_state(conn: psycopg.Connection, at: datetime) -> dict[str, dict]:
    """segment_id -> {speed_kmh, vehicles, congestion} at ``at``.

    The twin's aggregated state when it has data for ``at``; else computed from the raw
    readings of traffic sensors (their placement's segment) in the 5 minutes before ``at``.
    """
    rows = _twin_rows("segments_at", conn, at)
    if rows is not None:
        return {str(r["segment_id"]): {"speed_kmh": _num(r.get("speed_kmh")),
                                       "vehicles": _num(r.get("flow_veh_h")),
                                       "congestion": _num(r.get("congestion"))} for r in rows}
    free = {s["id"]: s["free_flow_kmh"] for s in city_model()["segments"]}
    rows = conn.execute(
        f"""SELECT p.segment_id, avg(r.{_T["speed_kmh"]}), sum(r.{_T["vehicle_count"]})
           FROM citypulse.raw r JOIN citypulse.sensors s ON s.id = r.sensor
           JOIN citypulse.sensor_placement p ON p.sensor = s.id
           WHERE s.kind = 'traffic' AND r.time > %s AND r.time <= %s
           GROUP BY 1""", (at - STATE_WINDOW, at)).fetchall()  # noqa: S608 - columns from the catalogue
    out = {}
    for seg, speed, vehicles in rows:
        if seg is None:
            continue
        ff = free.get(seg, DEFAULT_FREE_FLOW_KMH)
        cong = None if speed is None else congestion_index(speed, ff)
        out[seg] = {"speed_kmh": speed, "vehicles": vehicles, "congestion": cong}
    return out


def zone_state(conn: psycopg.Connection, at: datetime) -> dict[str, dict]:
    """zone_id -> {people, density_per_ha} at ``at`` (twin first, raw people counters else)."""
    areas = {z["id"]: z["area_m2"] for z in city_model()["zones"]}
    rows = _twin_rows("zones_at", conn, at)
    if rows is not None:
        out = {}
        for r in rows:
            d = _num(r.get("density_per_1000m2"))
            out[str(r["zone_id"])] = {"people": _num(r.get("people")),
                                      "density_per_ha": None if d is None else d * 10}
        return out
    rows = conn.execute(
        f"""SELECT zone, sum(people) FROM (
               SELECT DISTINCT ON (r.sensor) p.zone_id AS zone, r.{_P["people_count"]} AS people
               FROM citypulse.raw r JOIN citypulse.sensors s ON s.id = r.sensor
               JOIN citypulse.sensor_placement p ON p.sensor = s.id
               WHERE s.kind = 'people' AND coalesce(p.role, 'zone') = 'zone'
                 AND r.time > %s AND r.time <= %s
               ORDER BY r.sensor, r.time DESC) latest
           GROUP BY zone""", (at - STATE_WINDOW, at)).fetchall()  # noqa: S608 - columns from the catalogue
    return {z: {"people": p, "density_per_ha": density_per_1000m2(p, areas[z]) * 10
                if areas.get(z) else None}
            for z, p in rows if z is not None}


def od_flows(conn: psycopg.Connection, at: datetime) -> list[dict]:
    """Logistics origin-destination flows [{origin, dest, trips}] for the hour of ``at``.

    The twin's hourly OD when it has trips; else trackers' planned origin/destination.
    """
    rows = _twin_rows("od", conn, at)
    if rows is not None:
        return [{"origin": str(r["origin_zone"]), "dest": str(r["dest_zone"]),
                 "trips": float(r["trips"])} for r in rows]
    rows = conn.execute(
        """SELECT props->>'origin_zone', props->>'dest_zone', count(*)
           FROM citypulse.sensors WHERE kind = 'logistics'
             AND props ? 'origin_zone' AND props ? 'dest_zone'
           GROUP BY 1, 2""").fetchall()
    return [{"origin": o, "dest": d, "trips": float(n)} for o, d, n in rows]


def map_state(conn: psycopg.Connection, at: datetime | None = None,
              with_offline: bool = True, segs: dict[str, dict] | None = None,
              alerts: list[dict] | None = None, max_arcs: int = 80) -> dict[str, Any]:
    """The small per-refresh state of the map, aligned with :func:`city_model` order.

    ``seg``: congestion band index per segment (-1 no data); ``zone``: people per ha per
    zone (None no data); ``od``: arcs [[lon,lat],[lon,lat],trips]; ``offline``: positions;
    ``alerts``: alerts open at ``at`` [lon, lat, severity rgb, id] (open now when ``at`` is
    None; a replay of a past time shows those open then); ``colours``: band colours.
    """
    if alerts is None:
        alerts = list_alerts(conn, open_only=True) if at is None else alerts_open_at(conn, at)
    at = at or datetime.now(UTC)
    follow_city(conn)
    model = city_model()
    bands = congestion_bands()
    segs = segment_state(conn, at) if segs is None else segs
    zones = zone_state(conn, at)
    cent = zone_centroids()
    flows = sorted(od_flows(conn, at), key=lambda f: -f["trips"])
    od = [[cent[f["origin"]], cent[f["dest"]], f["trips"]] for f in flows
          if f["origin"] in cent and f["dest"] in cent and f["origin"] != f["dest"]][:max_arcs]
    markers = [[a["lon"], a["lat"], list(severity_rgb(a["severity"])), a["id"]]
               for a in alerts if a.get("lon") is not None]
    dens = [zones.get(z["id"], {}).get("density_per_ha") for z in model["zones"]]
    return {
        "at": at.isoformat(),
        "seg": [band_index(segs.get(s["id"], {}).get("congestion"), bands)
                for s in model["segments"]],
        "zone": [None if d is None else round(d, 1) for d in dens],
        "zone_rgb": [density_rgba(d) for d in dens],
        "od": od,
        "offline": offline_positions(conn) if with_offline else [],
        "alerts": markers,
        "colours": [list(b.rgb) for b in bands],
    }
