"""The twin's live state as FIWARE Smart Data Models entities (keyValues form).

In: a psycopg connection to the store (the twin's tables, analytics' alerts, the registry).
Out: lists of plain dicts in the NGSI-LD *keyValues* representation, which is what the Smart
Data Models JSON Schemas describe (``data/schemas``); :mod:`standards.ngsild.views` turns them
into the normalized form.  One builder per entity type:

- ``TrafficFlowObserved`` per directed segment (:func:`twin.state.segments_at`, the window
  means of the twin's per-minute rollup);
- ``CrowdFlowObserved`` per zone (:func:`twin.state.zones_at`);
- ``Alert`` per alert not resolved (analytics' lifecycle);
- ``Device`` per registered device, ``DeviceModel`` per kind of the catalogue.

Entity ids are URNs ``urn:ngsi-ld:<type>:<citypulse id>``.  An attribute whose value is
unknown (no data in the window) is left out: NGSI-LD has no null values.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote

import psycopg
import shapely
from shapely import wkt

from citypulse.catalogue import DEVICE_KINDS, KINDS
from twin import state

log = logging.getLogger(__name__)

URN = "urn:ngsi-ld:"
TRAFFIC, CROWD, ALERT, DEVICE, MODEL = ("TrafficFlowObserved", "CrowdFlowObserved", "Alert",
                                        "Device", "DeviceModel")
TYPES = (TRAFFIC, CROWD, ALERT, DEVICE, MODEL)
PROVIDER = "citypulse"
_SAFE = "-._~:!$'()*+,;=@"  # kept as is in an id; anything else is %-encoded (e.g. ">")

# catalogue metric -> Smart Data Models' controlledProperty (Device-Commons' enum)
CONTROLLED = {
    "vehicle_count": "trafficFlow", "speed_kmh": "speed", "occupancy_pct": "occupancy",
    "people_count": "occupancy", "entries": "movementActivity", "exits": "movementActivity",
    "lon": "location", "lat": "location", "heading_deg": "heading", "load_kg": "weight",
    "pm25_ugm3": "airPollution", "pm10_ugm3": "airPollution", "no2_ugm3": "airPollution",
    "level_m": "waterLevel", "rain_mm_h": "precipitation", "smoke_pct": "smoke",
    "temperature_c": "temperature", "ch4_lel_pct": "airPollution", "co_ppm": "airPollution",
    "laeq_db": "noiseLevel", "flow_m3_h": "waterFlow", "sump_level_m": "waterLevel",
    "battery_pct": "batterySupply", "running": "waterFlow", "sounding": "noiseLevel",
}
# analytics' severities -> Alert's enum
SEVERITY = {"info": "informational", "warning": "medium", "critical": "critical"}
# words of a rule id or entity kind -> Alert's category enum (first match wins)
CATEGORY = (("congest", "traffic"), ("speed", "traffic"), ("segment", "traffic"),
            ("flood", "naturalDisaster"), ("water", "naturalDisaster"),
            ("rain", "naturalDisaster"), ("pm", "environment"), ("no2", "environment"),
            ("noise", "environment"), ("air", "environment"), ("heat", "weather"))
# words of a rule id -> Alert's subCategory enum (unmatched: no subCategory, ``rule`` says it)
SUBCATEGORY = (("fire", "buildingFire"), ("gas", "fireRisk"), ("flood", "floodRisk"),
               ("rain", "rainfall"), ("water_level", "flood"), ("crowd", "crowdRisk"),
               ("speed_collapse", "carAccident"), ("congest", "trafficJam"),
               ("traffic", "trafficJam"), ("pm", "airPollution"), ("no2", "airPollution"))


def urn(kind: str, ident: object) -> str:
    """The entity id of citypulse's ``ident`` as a ``kind`` entity."""
    return f"{URN}{kind}:{quote(str(ident), safe=_SAFE)}"


def local_id(entity_id: str) -> tuple[str, str] | None:
    """(type, citypulse id) of an entity id of ours, else None."""
    if not entity_id.startswith(URN):
        return None
    kind, _, ident = entity_id[len(URN):].partition(":")
    return (kind, unquote(ident)) if kind in TYPES and ident else None


def _utc(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _geometries(conn: psycopg.Connection, table: str, key: str) -> dict[str, dict]:
    rows = conn.execute(f"SELECT {key}, geom_wkt FROM citypulse.{table}").fetchall()  # noqa: S608
    return {k: shapely.geometry.mapping(wkt.loads(g)) for k, g in rows}


_GEOM_CACHE: dict[tuple, dict[str, dict]] = {}


def geometries(conn: psycopg.Connection, table: str, key: str) -> dict[str, dict]:
    """GeoJSON geometry per segment or zone id (cached per table size and city)."""
    ck = (table,) + conn.execute(
        f"SELECT count(*), md5(string_agg({key}, ',' ORDER BY {key})) "  # noqa: S608
        f"FROM citypulse.{table}").fetchone()
    if ck not in _GEOM_CACHE:
        if len(_GEOM_CACHE) > 8:
            _GEOM_CACHE.clear()
        _GEOM_CACHE[ck] = _geometries(conn, table, key)
    return _GEOM_CACHE[ck]


def _window(st: state.State) -> dict:
    if st.bucket is None:
        return {"dateObserved": _utc(st.at)}
    end = st.bucket + timedelta(minutes=1)
    start = end - timedelta(seconds=st.window_s)
    return {"dateObserved": f"{_utc(start)}/{_utc(end)}", "dateObservedFrom": _utc(start),
            "dateObservedTo": _utc(end)}


def _put(e: dict, name: str, value: object, fn: Callable | None = None) -> None:
    if value is not None:
        e[name] = fn(value) if fn else value


def congestion_threshold(settings=None) -> float:
    """The congestion index above which a segment is congested (analytics' congestion rule)."""
    from analytics.rules import RulesError, load_rules

    try:
        rules = load_rules(getattr(settings, "rules_file", None))
    except RulesError as exc:  # analytics refuses to start on it; NGSI-LD keeps serving
        log.warning("event=ngsild_rules_unreadable default_congested_above=0.6 error=%s",
                    str(exc)[:300])
        return 0.6
    for r in rules.rules:
        if getattr(r, "type", None) == "congestion":
            return float(r.index_above)
    return 0.6


def traffic(conn: psycopg.Connection, at: datetime | None = None,
            congested_above: float = 0.6) -> list[dict]:
    """One ``TrafficFlowObserved`` per directed segment: the twin's window means at ``at``."""
    st = state.segments_at(conn, at)
    geoms = geometries(conn, "twin_segments", "segment_id")
    common = _window(st)
    out = []
    for r in st.rows:
        e = {"id": urn(TRAFFIC, r["segment_id"]), "type": TRAFFIC, **common,
             "name": r["road"], "refRoadSegment": urn("RoadSegment", r["segment_id"]),
             "dataProvider": PROVIDER}
        if r["flow_veh_h"] is not None:
            e["intensity"] = round(r["flow_veh_h"] * st.window_s / 3600.0, 3)
            e["vehicleFlowPerHour"] = r["flow_veh_h"]
        _put(e, "averageVehicleSpeed", r["speed_kmh"], lambda v: max(0.0, v))
        _put(e, "occupancy", r["occupancy_pct"], lambda v: min(1.0, max(0.0, v / 100.0)))
        if r["congestion"] is not None:
            e["congestionIndex"] = r["congestion"]
            e["congested"] = bool(r["congestion"] >= congested_above)
        _put(e, "volumeCapacityRatio", r["volume_capacity"])
        _put(e, "sensorCount", r["sensors"])
        e["location"] = geoms.get(r["segment_id"])
        out.append(_clean(e))
    return out


def crowd(conn: psycopg.Connection, at: datetime | None = None) -> list[dict]:
    """One ``CrowdFlowObserved`` per zone: people, density, entries/exits at ``at``."""
    st = state.zones_at(conn, at)
    geoms = geometries(conn, "twin_zones", "zone_id")
    common = _window(st)
    out = []
    for r in st.rows:
        e = {"id": urn(CROWD, r["zone_id"]), "type": CROWD, **common, "name": r["name"],
             "zoneType": r["zone_type"], "dataProvider": PROVIDER}
        _put(e, "peopleCount", r["people"], lambda v: int(round(max(0.0, v))))
        _put(e, "peopleCountTowards", r["entries"], lambda v: int(round(max(0.0, v))))
        _put(e, "peopleCountAway", r["exits"], lambda v: int(round(max(0.0, v))))
        _put(e, "densityPer1000m2", r["density_per_1000m2"])
        _put(e, "densityRatio", r["density_ratio"])
        _put(e, "vehicles", r["vehicles"])
        _put(e, "trucks", r["trucks"])
        e["location"] = geoms.get(r["zone_id"])
        out.append(_clean(e))
    return out


def _clean(e: dict) -> dict:
    return {k: v for k, v in e.items() if v is not None}


def _category(rule: str, entity_kind: str) -> str:
    text = f"{rule} {entity_kind}".lower()
    return next((c for w, c in CATEGORY if w in text), "security")


def _source(entity_kind: str, entity_id: str) -> str:
    kind = {"sensor": DEVICE, "segment": TRAFFIC, "zone": CROWD}.get(entity_kind)
    return urn(kind, entity_id) if kind else urn(f"citypulse-{entity_kind}", entity_id)


def alerts(conn: psycopg.Connection, limit: int = 5000) -> list[dict]:
    """One ``Alert`` per alert that is not resolved (open or acknowledged)."""
    from analytics.lifecycle import list_alerts

    out = []
    for a in list_alerts(conn, open_only=True, limit=limit):
        geom = a.geometry or ({"type": "Point", "coordinates": [a.lon, a.lat]}
                              if a.lon is not None and a.lat is not None else None)
        e = {"id": urn(ALERT, a.id), "type": ALERT, "category": _category(a.rule, a.entity_kind),
             "subCategory": next((c for w, c in SUBCATEGORY if w in a.rule), None),
             "rule": a.rule, "severity": SEVERITY.get(a.severity, "medium"),
             "dateIssued": _utc(a.detected_at), "validFrom": _utc(a.started_at),
             "description": a.title or a.rule, "alertSource": _source(a.entity_kind, a.entity_id),
             "alertStatus": a.status, "escalationLevel": a.escalation_level,
             "zone": a.zone_id, "dataProvider": PROVIDER, "location": geom}
        if a.acknowledged_at is not None:
            e["dateAcknowledged"] = _utc(a.acknowledged_at)
        out.append(_clean(e))
    return out


def _controlled(kind: str) -> list[str]:
    k = DEVICE_KINDS.get(kind)
    seen: list[str] = []
    for m in k.metrics if k else ():
        p = CONTROLLED.get(m.name)
        if p and p not in seen:
            seen.append(p)
    return seen


def _category_of(kind: str) -> list[str]:
    return ["sensor"] if kind in KINDS else ["actuator"]


def device_models() -> list[dict]:
    """One ``DeviceModel`` per kind of the catalogue (sensors and actuators)."""
    out = []
    for name, k in sorted(DEVICE_KINDS.items()):
        cat = _category_of(name)
        out.append({
            "id": urn(MODEL, name), "type": MODEL, "name": name, "modelName": name,
            "brandName": PROVIDER, "manufacturerName": "unspecified",
            "description": k.description, "category": cat, "deviceCategory": cat,
            "controlledProperty": _controlled(name),
            "function": ["sensing"] if cat == ["sensor"] else ["onOff"],
            "supportedUnits": sorted({m.unit for m in k.metrics}),
            "measuredMetrics": [m.name for m in k.metrics],
            "reportingIntervalSeconds": k.interval_s, "placement": k.placement,
            "dataProvider": PROVIDER})
    return out


DEVICE_SQL = """
SELECT s.sensor_id, s.kind, s.lon, s.lat, s.gateway_id, s.registered_at, st.status,
       st.changed_at, p.segment_id, p.zone_id
FROM citypulse.sensors s
LEFT JOIN citypulse.sensor_status st ON st.sensor_id = s.sensor_id
LEFT JOIN citypulse.sensor_placement p ON p.sensor = s.id
"""


def device(row: tuple) -> dict:
    """A ``Device`` from one row of :data:`DEVICE_SQL`."""
    sid, kind, lon, lat, gw, registered, status, changed, seg, zone = row
    cat = _category_of(kind)
    e = {"id": urn(DEVICE, sid), "type": DEVICE, "name": sid, "category": cat,
         "deviceCategory": cat, "controlledProperty": _controlled(kind),
         "refDeviceModel": urn(MODEL, kind), "dateInstalled": _utc(registered),
         "deviceState": status or "unknown", "dataProvider": PROVIDER,
         "location": {"type": "Point", "coordinates": [lon, lat]}}
    _put(e, "gatewayId", gw)
    _put(e, "dateLastStateChange", changed, _utc)
    _put(e, "refRoadSegment", seg, lambda v: urn(TRAFFIC, v))
    _put(e, "refZone", zone, lambda v: urn(CROWD, v))
    return e


def devices(conn: psycopg.Connection, where: str = "", params: tuple = (),
            limit: int | None = None, offset: int = 0) -> list[dict]:
    """``Device`` entities in ``sensor_id`` order (``where``: SQL over ``s.``, from code)."""
    q = DEVICE_SQL + (f" WHERE {where}" if where else "") + " ORDER BY s.sensor_id"
    if limit is not None:
        q += f" LIMIT {int(limit)} OFFSET {int(offset)}"
    return [device(r) for r in conn.execute(q, params).fetchall()]
