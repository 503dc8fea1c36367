"""Targets through the twin: which devices a command reaches.

In: a connection to a store whose sensors the twin has placed (``citypulse.sensor_placement``)
and a target: ``{"device": id}``, or a kind with ``{"zone": z}``, ``{"segment": s}`` (and the
segments of its queue: ``{"segment": s, "queue": [s2, ...]}``) or ``{"alert": id}`` (the
alert's zone, and every zone, segment or sensor in its scope).  Out: the devices (dicts with
``id, device_id, kind, zone_id, segment_id``), sorted by device id.  Raises
:class:`TargetError` for an unknown device, alert or empty target.
"""

from __future__ import annotations

import psycopg
from psycopg.rows import dict_row

_DEVICE = """
SELECT s.id, s.sensor_id AS device_id, s.kind, coalesce(p.zone_id, s.props->>'zone_id') AS zone_id,
       coalesce(p.segment_id, s.props->>'segment_id') AS segment_id
FROM citypulse.sensors s LEFT JOIN citypulse.sensor_placement p ON p.sensor = s.id
"""


class TargetError(ValueError):
    """The target names nothing that exists."""


def device(conn: psycopg.Connection, device_id: str) -> dict:
    """One registered device with its placement; TargetError if unknown."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_DEVICE + " WHERE s.sensor_id = %s", (device_id,)).fetchone()
    if row is None:
        raise TargetError(f"unknown device {device_id!r} (not in the registry)")
    return row


def alert_places(conn: psycopg.Connection, alert_id: int) -> tuple[set[str], set[str]]:
    """(zones, segments) an alert covers: its zone and its scope's zones/segments/sensors."""
    row = conn.execute("SELECT zone_id, entity_kind, entity_id, scope FROM citypulse.alerts "
                       "WHERE id = %s", (alert_id,)).fetchone()
    if row is None:
        raise TargetError(f"unknown alert {alert_id}")
    zone, ekind, eid, scope = row
    members = [str(m) for m in (scope or []) if isinstance(m, str | int)]
    members += [str(m.get("id")) for m in (scope or []) if isinstance(m, dict) and m.get("id")]
    names = [*members, eid]
    zones = {z for (z,) in conn.execute(
        "SELECT zone_id FROM citypulse.twin_zones WHERE zone_id = ANY(%s)", (names,))}
    segs = {s for (s,) in conn.execute(
        "SELECT segment_id FROM citypulse.twin_segments WHERE segment_id = ANY(%s)", (names,))}
    for z, s in conn.execute(
            "SELECT p.zone_id, p.segment_id FROM citypulse.sensors x JOIN "
            "citypulse.sensor_placement p ON p.sensor = x.id WHERE x.sensor_id = ANY(%s)",
            (names,)):
        if z:
            zones.add(z)
        if s:
            segs.add(s)
    if zone and zone != "city":
        zones.add(zone)
    if ekind == "zone":
        zones.add(eid)
    return zones, segs


def resolve(conn: psycopg.Connection, target: dict, kind: str | None = None) -> list[dict]:
    """Devices of ``kind`` the target names (see module doc)."""
    if "device" in target:
        return [device(conn, target["device"])]
    if kind is None:
        raise TargetError("a fleet target needs a device kind")
    zones: set[str] = set()
    segs: set[str] = set()
    if "zone" in target:
        zones.add(str(target["zone"]))
    if "segment" in target:
        segs.add(str(target["segment"]))
        segs.update(str(s) for s in target.get("queue", []))
    if "alert" in target:
        z, s = alert_places(conn, int(target["alert"]))
        zones |= z
        segs |= s
    if not zones and not segs:
        raise TargetError(f"target {target} names no zone, segment or alert")
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            _DEVICE + " WHERE s.kind = %s AND (coalesce(p.zone_id, s.props->>'zone_id') = "
            "ANY(%s) OR coalesce(p.segment_id, s.props->>'segment_id') = ANY(%s)) "
            "ORDER BY s.sensor_id", (kind, sorted(zones), sorted(segs))).fetchall()
    return rows
