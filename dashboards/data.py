"""The dashboards' one adapter point onto the store, the twin and analytics.

In: a psycopg connection (autocommit) and the settings.  Out: plain, JSON-ready dicts and
lists that pages and :mod:`dashboards.figures` use.  Everything the UI knows about the
twin (city model, segment/zone state, OD flows) and analytics (alerts, severity and
congestion colour bands) comes through here, so switching from the store-level fallbacks
to the ``twin``/``analytics`` APIs happens in this file only.

Nothing here raises on a missing optional part: an absent table or API gives empty data.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

import analytics
from citypulse.formulas import congestion_index, density_per_1000m2

log = logging.getLogger(__name__)

SEVERITIES = ("critical", "warning", "info")
ALERT_ACTIONS = ("acknowledge", "escalate", "resolve")
STATE_WINDOW = timedelta(minutes=5)
CENTRE = (121.929, 30.899)  # lon, lat of the lake centre (the twin's origin)
LOCAL_TZ = ZoneInfo("Asia/Shanghai")
# people density colour scale (persons per hectare -> rgba), low to high
_DENSITY_STOPS = ((0.0, (27, 42, 74)), (50.0, (58, 12, 163)), (150.0, (123, 44, 191)),
                  (600.0, (247, 37, 133)))


# --- colour bands (from analytics when available) ------------------------------------------
@dataclass(frozen=True)
class Band:
    """One colour band: values >= ``lo`` (and below the next band) get ``rgb``."""

    lo: float
    label: str
    rgb: tuple[int, int, int]


# display colours of band labels (the thresholds themselves come from analytics)
_BAND_RGB = {"free": (46, 204, 113), "busy": (241, 196, 15), "slow": (243, 156, 18),
             "congested": (231, 76, 60), "jammed": (192, 57, 43)}
_PALETTE = ((46, 204, 113), (241, 196, 15), (243, 156, 18), (231, 76, 60), (142, 68, 173))


@lru_cache(maxsize=1)
def ui_thresholds() -> dict[str, Any]:
    """The colour bands and limits of analytics' rules file, read once."""
    return analytics.ui_thresholds()


def congestion_bands() -> tuple[Band, ...]:
    """Congestion colour bands, lower bounds from analytics' rules."""
    return tuple(Band(float(lo), str(label), _BAND_RGB.get(label, _PALETTE[i % 5]))
                 for i, (lo, _hi, label) in enumerate(ui_thresholds()["congestion_bands"]))


def severity_rgb(severity: str) -> tuple[int, int, int]:
    """Display colour of an alert severity (analytics' severity colours)."""
    return tuple(ui_thresholds()["severity_colours"].get(severity, (200, 200, 200)))


def severity_css() -> str:
    """CSS custom properties ``--sev-<severity>: rgb(...)`` from analytics' severity colours.

    The app puts this in every page's head, so badges, tiles and legends are coloured by
    analytics (``ui_thresholds()["severity_colours"]``), never by colours written in CSS.
    """
    props = "".join(f"--sev-{name}: rgb({', '.join(str(int(c)) for c in rgb)}); "
                    for name, rgb in sorted(ui_thresholds()["severity_colours"].items()))
    return ":root { " + props + "}"


def density_rgba(per_ha: float | None) -> list[int] | None:
    """Choropleth colour of a people density (persons/ha); None for no data."""
    if per_ha is None:
        return None
    stops = _DENSITY_STOPS
    if per_ha <= stops[0][0]:
        return [*stops[0][1], 190]
    for (x0, c0), (x1, c1) in zip(stops, stops[1:], strict=False):
        if per_ha <= x1:
            f = (per_ha - x0) / (x1 - x0)
            return [round(a + (b - a) * f) for a, b in zip(c0, c1, strict=True)] + [190]
    return [*stops[-1][1], 190]


def band_index(value: float | None, bands: tuple[Band, ...]) -> int:
    """Index of the band ``value`` falls in (-1 for no data)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return -1
    idx = 0
    for i, b in enumerate(bands):
        if value >= b.lo:
            idx = i
    return idx


# --- the city model (static geometry) ------------------------------------------------------
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


# --- twin state ---------------------------------------------------------------------------
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
        """SELECT p.segment_id, avg(r.v1), sum(r.v0)
           FROM citypulse.raw r JOIN citypulse.sensors s ON s.id = r.sensor
           JOIN citypulse.sensor_placement p ON p.sensor = s.id
           WHERE s.kind = 'traffic' AND r.time > %s AND r.time <= %s
           GROUP BY 1""", (at - STATE_WINDOW, at)).fetchall()
    out = {}
    for seg, speed, vehicles in rows:
        if seg is None:
            continue
        ff = free.get(seg, 50.0)
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
        """SELECT zone, sum(people) FROM (
               SELECT DISTINCT ON (r.sensor) p.zone_id AS zone, r.v0 AS people
               FROM citypulse.raw r JOIN citypulse.sensors s ON s.id = r.sensor
               JOIN citypulse.sensor_placement p ON p.sensor = s.id
               WHERE s.kind = 'people' AND coalesce(p.role, 'zone') = 'zone'
                 AND r.time > %s AND r.time <= %s
               ORDER BY r.sensor, r.time DESC) latest
           GROUP BY zone""", (at - STATE_WINDOW, at)).fetchall()
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


def _num(v: Any) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def zone_centroids() -> dict[str, list[float]]:
    """zone_id -> [lon, lat] (mean of the outline), for OD arcs."""
    out = {}
    for z in city_model()["zones"]:
        pts = z["polygon"][:-1] or z["polygon"]
        out[z["id"]] = [sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)]
    return out


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


# --- alerts (analytics.lifecycle) -----------------------------------------------------------
def list_alerts(conn: psycopg.Connection, open_only: bool = True,
                limit: int = 200) -> list[dict]:
    """Alerts, most severe and newest first, as dicts (analytics' ``Alert`` fields)."""
    from analytics import lifecycle

    return [asdict(a) for a in lifecycle.list_alerts(conn, open_only=open_only, limit=limit)]


def alerts_open_at(conn: psycopg.Connection, at: datetime, limit: int = 200) -> list[dict]:
    """Alerts open at time ``at`` (started by then, not resolved by then), as dicts."""
    return [asdict(a) for a in analytics.alerts_open_at(conn, at, limit=limit)]


def get_alert(conn: psycopg.Connection, alert_id: int) -> dict | None:
    """One alert as a dict, or None."""
    from analytics import lifecycle

    a = lifecycle.get_alert(conn, alert_id)
    return None if a is None else asdict(a)


def alert_action(conn: psycopg.Connection, alert_id: int, action: str, operator: str,
                 note: str = "") -> str | None:
    """Acknowledge, escalate or resolve alert ``alert_id`` as ``operator``.

    Returns None when done, else why not (e.g. already resolved).  The caller has checked
    the operator's role; the action is also recorded in ``citypulse.dashboard_audit``.
    """
    from analytics import lifecycle

    if action not in ALERT_ACTIONS:
        raise ValueError(f"unknown alert action {action!r}")
    try:
        getattr(lifecycle, action)(conn, alert_id, operator, note=note)
        error = None
    except lifecycle.AlertError as exc:
        error = str(exc)
    audit(conn, operator, action, {"alert_id": alert_id, "note": note, "error": error})
    return error


def alert_evidence(conn: psycopg.Connection, alert: dict) -> tuple[dict[str, list], list]:
    """(series, trail): the readings behind an alert and its audit trail (analytics).

    ``series`` maps ``metric`` (or ``sensor metric`` when several sensors) to
    [[time, value], ...]; ``trail`` is the alert's events, oldest first.
    """
    ev = analytics.evidence(conn, alert["id"], minutes=60)
    several = len({r["sensor_id"] for r in ev["readings"]}) > 1
    out: dict[str, list] = {}
    for r in ev["readings"]:
        key = f"{r['sensor_id']} {r['metric']}" if several else r["metric"]
        out.setdefault(key, []).append([r["time"], r["value"]])
    return out, list(ev["trail"])


def audit(conn: psycopg.Connection, user: str, action: str, detail: dict) -> None:
    """Record a dashboard action (who, what) in ``citypulse.dashboard_audit``."""
    from psycopg.types.json import Jsonb

    conn.execute("INSERT INTO citypulse.dashboard_audit (username, action, detail) "
                 "VALUES (%s, %s, %s)", (user, action, Jsonb(detail)))


# --- KPIs, traffic and ingest health --------------------------------------------------------
def kpis(conn: psycopg.Connection, at: datetime | None = None,
         alerts: list[dict] | None = None) -> dict[str, Any]:
    """Wall KPIs: readings/s (last 10 s), sensors online/total, open alerts by severity."""
    at = at or datetime.now(UTC)
    (n,) = conn.execute("SELECT count(*) FROM citypulse.raw WHERE time > %s AND time <= %s",
                        (at - timedelta(seconds=10), at)).fetchone()
    (total,) = conn.execute("SELECT count(*) FROM citypulse.sensors").fetchone()
    from analytics import maintenance

    incidents, upkeep = maintenance.split(list_alerts(conn, open_only=True)
                                          if alerts is None else alerts)
    # one count of silent sensors: their last will said offline, or an open upkeep alert
    # names them (a sensor with an open offline alert is not "online")
    silent = maintenance.silent_sensors(upkeep)
    (offline,) = conn.execute(
        """SELECT count(*) FROM (SELECT sensor_id FROM citypulse.sensor_status
                                 WHERE status = 'offline' UNION SELECT unnest(%s::text[])) s""",
        (sorted(silent),)).fetchone()
    by_sev = dict.fromkeys(SEVERITIES, 0)
    for a in incidents:
        by_sev[a["severity"]] = by_sev.get(a["severity"], 0) + 1
    return {"readings_per_s": n / 10.0, "sensors_total": total,
            "sensors_online": max(0, total - offline), "alerts": by_sev,
            "upkeep_open": len(upkeep)}


def worst_segments(conn: psycopg.Connection, at: datetime | None = None,
                   n: int = 5, state: dict[str, dict] | None = None) -> list[dict]:
    """The ``n`` most congested segments: [{id, name, congestion, speed_kmh}]."""
    at = at or datetime.now(UTC)
    state = segment_state(conn, at) if state is None else state
    names = {s["id"]: s["name"] for s in city_model()["segments"]}
    rows = [{"id": k, "name": names.get(k, k), **v} for k, v in state.items()
            if v.get("congestion") is not None]
    return sorted(rows, key=lambda r: -r["congestion"])[:n]


def segment_series(conn: psycopg.Connection, segment_id: str, since: datetime,
                   until: datetime) -> list[dict]:
    """Per-minute flow (vehicles) and mean speed of one segment: [{t, vehicles, speed}]."""
    rows = conn.execute(
        """SELECT r.bucket, sum(r.s0), sum(r.s1) / nullif(sum(r.c1), 0)
           FROM citypulse.rollup_1m r JOIN citypulse.sensors s ON s.id = r.sensor
           WHERE s.kind = 'traffic' AND s.props->>'segment_id' = %s
             AND r.bucket >= %s AND r.bucket < %s
           GROUP BY 1 ORDER BY 1""", (segment_id, since, until)).fetchall()
    return [{"t": t, "vehicles": v, "speed": s} for t, v, s in rows]


def congestion_by_hour_ring(conn: psycopg.Connection, since: datetime) -> list[dict]:
    """Mean congestion per (hour of day, ring): [{hour, ring, congestion}]."""
    segs = {s["id"]: s for s in city_model()["segments"]}
    rows = conn.execute(
        """SELECT extract(hour FROM r.bucket AT TIME ZONE 'Asia/Shanghai')::int,
                  s.props->>'segment_id', sum(r.s1) / nullif(sum(r.c1), 0)
           FROM citypulse.rollup_1m r JOIN citypulse.sensors s ON s.id = r.sensor
           WHERE s.kind = 'traffic' AND r.bucket >= %s GROUP BY 1, 2""", (since,)).fetchall()
    acc: dict[tuple[int, str], list[float]] = {}
    for hour, seg, speed in rows:
        if seg not in segs or speed is None:
            continue
        s = segs[seg]
        cong = max(0.0, min(1.0, 1 - speed / s["free_flow_kmh"]))
        acc.setdefault((hour, s["ring"]), []).append(cong)
    return [{"hour": h, "ring": r, "congestion": sum(v) / len(v)}
            for (h, r), v in sorted(acc.items())]


def ingest_health(conn: psycopg.Connection, since: datetime) -> dict[str, Any]:
    """Ingest health since ``since``: per-second readings, lag, dead letters, seq-gap loss."""
    # device time never stands for "now": readings stamped ahead of the server's clock (a
    # device clock running fast) are counted apart, not drawn minutes into the future
    rate = conn.execute(
        """SELECT date_trunc('second', time) t, count(*) FROM citypulse.raw
           WHERE time >= %s AND time <= now() GROUP BY 1 ORDER BY 1""", (since,)).fetchall()
    dead = conn.execute(
        """SELECT reason, count(*), (array_agg(left(encode(payload, 'escape'), 160)
                                      ORDER BY received_at DESC))[1:3]
           FROM citypulse.dead_letters WHERE received_at >= %s GROUP BY 1 ORDER BY 2 DESC""",
        (since,)).fetchall()
    (loss,) = conn.execute(
        """SELECT coalesce(sum(gap), 0) FROM (
               SELECT seq - lag(seq) OVER (PARTITION BY sensor ORDER BY time) - 1 AS gap
               FROM citypulse.raw WHERE time >= %s AND seq IS NOT NULL) g
           WHERE gap > 0""", (since,)).fetchone()
    (offline,) = conn.execute(
        "SELECT count(*) FROM citypulse.sensor_status WHERE status = 'offline'").fetchone()
    # gateways offline: analytics decides (heartbeats, silent sensors) and opens an alert
    (gw_off,) = conn.execute(
        """SELECT count(*) FROM citypulse.alerts
           WHERE entity_kind = 'gateway' AND status <> 'resolved'""").fetchone()
    latest, ahead, ahead_sensors = conn.execute(
        """SELECT max(time) FILTER (WHERE time <= now()), count(*) FILTER (WHERE time > now()),
                  count(DISTINCT sensor) FILTER (WHERE time > now())
           FROM citypulse.raw WHERE time >= %s""", (since,)).fetchone()
    lag = max(0.0, (datetime.now(UTC) - latest).total_seconds()) if latest else None
    return {"rate": [{"t": t, "n": n} for t, n in rate],
            "dead_letters": [{"reason": r, "count": n, "samples": s or []} for r, n, s in dead],
            "lost": int(loss), "sensors_offline": offline, "gateways_offline": gw_off,
            "lag_s": lag, "ahead_readings": ahead, "ahead_sensors": ahead_sensors}


def history_range(conn: psycopg.Connection) -> tuple[datetime, datetime] | None:
    """(first, last) time of stored readings, or None when the store is empty."""
    # capped at the server's now: a device clock running fast cannot stretch the range
    row = conn.execute("SELECT min(time), least(max(time), now()) FROM citypulse.raw").fetchone()
    return None if row[0] is None else (row[0], row[1])


# --- the collectors' Prometheus metrics (messages/s, readings/s, lag) --------------------------
_COUNTERS = ("citypulse_ingest_messages", "citypulse_ingest_readings_stored",
             "citypulse_ingest_dead_letters", "citypulse_ingest_seq_gaps")


def metrics_urls(settings: Any) -> list[str]:
    """The collectors' /metrics URLs the ingest page reads (settings)."""
    if settings.ingest_metrics_urls:
        return list(settings.ingest_metrics_urls)
    if settings.metrics_port:
        return [f"http://127.0.0.1:{settings.metrics_port}/metrics"]
    return []


def parse_metrics(text: str) -> dict[str, float]:
    """Totals of the collector counters and the mean sampled lag from Prometheus text."""
    from prometheus_client.parser import text_string_to_metric_families

    out = dict.fromkeys(_COUNTERS, 0.0)
    lag_sum = lag_n = 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name.endswith("_total") and s.name[:-6] in out:
                out[s.name[:-6]] += s.value
            elif s.name == "citypulse_ingest_lag_seconds_sum":
                lag_sum += s.value
            elif s.name == "citypulse_ingest_lag_seconds_count":
                lag_n += s.value
    out["lag_mean_s"] = lag_sum / lag_n if lag_n else float("nan")
    return out


def scrape(urls: list[str], timeout: float = 1.0) -> dict[str, float] | None:
    """Sum of the collectors' metrics, or None when none answered."""
    import requests

    total: dict[str, float] | None = None
    for url in urls:
        try:
            resp = requests.get(url, timeout=timeout)
            resp.raise_for_status()
        except requests.RequestException as exc:
            log.debug("metrics %s: %s", url, exc)
            continue
        got = parse_metrics(resp.text)
        total = got if total is None else {k: total[k] + got[k] for k in got}
    return total


def rates(prev: tuple[float, dict] | None, cur: tuple[float, dict]) -> dict[str, float]:
    """Per-second rates of the counters between two scrapes ``(monotonic time, totals)``."""
    if prev is None or cur[0] <= prev[0]:
        return {}
    dt = cur[0] - prev[0]
    return {k: max(0.0, (cur[1][k] - prev[1][k]) / dt) for k in _COUNTERS}
