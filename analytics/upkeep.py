"""Maintenance tickets: device upkeep found in the store, one open ticket per device or gateway.

In: a psycopg connection (autocommit) and a time ``at`` (default now).  Out: the table
``citypulse.maintenance_tickets`` (090_maintenance) kept in step with what is found now,
by :func:`run`; :func:`open_tickets` reads the queue (sorted by zone, then device).

Problems found (``PROBLEMS``), each with its evidence:

- ``silent``: an open upkeep alert names the sensor (``analytics.maintenance``), or its last
  will says offline; a dark gateway (an open offline alert on the gateway) gets one ticket
  of its own and its sensors none (one visit fixes them all).
- ``battery_low``: the lowest battery reading in the window is under ``BATTERY_LOW_PCT``.
- ``clock_ahead``: the collector re-stamped or rejected readings stamped ahead of their
  arrival (dead letters ``restamped``/``clock_ahead``/``bad_timestamp`` "ahead by N s", see
  ``ingest.validate``); the skew estimate is the median of (device time - arrival time).
- ``stuck``: at least ``STUCK_MIN_READINGS`` readings in the window, ``STUCK_MIN_HEALTH`` of
  them with the radio level, and every value the same (the device repeats its whole frame).
- ``bad_data``: at least ``BAD_DATA_MIN`` dead letters for the sensor in the window for its
  content (out of range, unknown metric, malformed).

A ticket is updated while a problem remains and closed (``recovered``) when none is found.
Never raises for a missing optional table (an empty queue instead).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg

from analytics import maintenance
from analytics.lifecycle import list_alerts
from citypulse.catalogue import KINDS, MAX_SLOTS

log = logging.getLogger(__name__)

PROBLEMS = ("silent", "battery_low", "clock_ahead", "stuck", "bad_data")
WINDOW_S = 900.0            # evidence is looked for in the last 15 minutes
BATTERY_LOW_PCT = 5.0        # the fleet's batteries are replaced at 5 %: below it, dying
STUCK_MIN_READINGS = 8
STUCK_MIN_HEALTH = 2        # ... with this many health readings (battery, rssi) among them
BAD_DATA_MIN = 5
CLOCK_REASONS = ("restamped", "clock_ahead", "bad_timestamp")  # "ahead by N s" in the detail
BAD_DATA_REASONS = ("out_of_range", "unknown_metric", "malformed")
CSV_FIELDS = ("zone", "kind", "device", "problems", "since", "evidence", "last_good_at")


def _slot_expr(metric: str) -> str:
    """``metric``'s raw column for the row's kind (NULL for kinds without it)."""
    arms = " ".join(f"WHEN '{k}' THEN r.v{kind.slot_of[metric]}"
                    for k, kind in KINDS.items() if metric in kind.slot_of)
    return f"CASE s.kind {arms} END"


def _silent(conn: psycopg.Connection) -> tuple[dict, dict]:
    """(sensor -> evidence, gateway -> evidence) of silent devices."""
    incidents, upkeep = maintenance.split(_alerts(conn))
    ids = maintenance.upkeep_rule_ids()
    gateways = {a["entity_id"]: {"alert": a["id"], "since": _iso(a["started_at"]),
                                 "sensors": len(a.get("scope") or [])}
                for a in incidents if a["rule"] in ids and a["entity_kind"] == "gateway"}
    sensors: dict[str, dict] = {}
    for a in upkeep:
        for s in maintenance.silent_sensors([a]):
            sensors[s] = {"alert": a["id"], "since": _iso(a["started_at"])}
    for sid, changed in conn.execute(
            "SELECT sensor_id, changed_at FROM citypulse.sensor_status WHERE status = 'offline'"):
        sensors.setdefault(sid, {"last_will": "offline", "since": _iso(changed)})
    return sensors, gateways


def _alerts(conn: psycopg.Connection) -> list[dict]:
    from dataclasses import asdict

    return [asdict(a) for a in list_alerts(conn, open_only=True, limit=5000)]


def _iso(t: Any) -> Any:
    return t.isoformat() if hasattr(t, "isoformat") else t


def find(conn: psycopg.Connection, at: datetime | None = None,
         window_s: float = WINDOW_S) -> dict[tuple[str, str], dict[str, dict]]:
    """What needs upkeep now: (entity kind, id) -> problem -> evidence."""
    at = at or datetime.now(UTC)
    since = at - timedelta(seconds=window_s)
    found: dict[tuple[str, str], dict[str, dict]] = {}
    sensors, gateways = _silent(conn)
    behind: set[str] = set()
    if gateways:
        behind = {s for (s,) in conn.execute(
            "SELECT sensor_id FROM citypulse.sensors WHERE gateway_id = ANY(%s)",
            (sorted(gateways),))}
    for g, ev in gateways.items():
        found[("gateway", g)] = {"silent": ev}
    for s, ev in sensors.items():
        if s not in behind:
            found.setdefault(("sensor", s), {})["silent"] = ev
    slots = ", ".join(f"min(r.v{i}), max(r.v{i})" for i in range(MAX_SLOTS))
    rows = conn.execute(
        f"""SELECT s.sensor_id, count(*), min({_slot_expr("battery_pct")}),
                   count({_slot_expr("rssi_dbm")}), {slots}
            FROM citypulse.raw r JOIN citypulse.sensors s ON s.id = r.sensor
            WHERE r.time > %s AND r.time <= %s GROUP BY 1""",  # noqa: S608 - slot columns from the catalogue
        (since, at)).fetchall()
    for sid, n, low, health, *mm in rows:
        if low is not None and low < BATTERY_LOW_PCT:
            found.setdefault(("sensor", sid), {})["battery_low"] = {"battery_pct": low}
        pairs = [(lo, hi) for lo, hi in zip(mm[::2], mm[1::2], strict=True) if lo is not None]
        # a frozen device repeats its whole frame, radio level included; a parked truck or a
        # dry rain gauge repeats its measurements but not its rssi
        if n >= STUCK_MIN_READINGS and health >= STUCK_MIN_HEALTH and pairs \
                and all(lo == hi for lo, hi in pairs):
            found.setdefault(("sensor", sid), {})["stuck"] = {
                "readings": n, "values": [lo for lo, _ in pairs]}
    for sid, n, skew in conn.execute(
            r"""SELECT sensor_id, count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY
                       substring(detail FROM 'ahead by ([0-9.]+) s')::float8)
                FROM citypulse.dead_letters
                WHERE received_at > %s AND received_at <= %s AND reason = ANY(%s)
                  AND sensor_id IS NOT NULL AND detail LIKE '%%ahead by %%' GROUP BY 1""",
            (since, at, list(CLOCK_REASONS))):
        found.setdefault(("sensor", sid), {})["clock_ahead"] = {
            "readings": n, "skew_s": round(skew, 1) if skew is not None else None}
    for sid, n, reasons in conn.execute(
            """SELECT sensor_id, count(*), array_agg(DISTINCT reason) FROM citypulse.dead_letters
               WHERE received_at > %s AND received_at <= %s AND reason = ANY(%s)
                 AND sensor_id IS NOT NULL GROUP BY 1 HAVING count(*) >= %s""",
            (since, at, list(BAD_DATA_REASONS), BAD_DATA_MIN)):
        found.setdefault(("sensor", sid), {})["bad_data"] = {"dead_letters": n,
                                                            "reasons": sorted(reasons)}
    return found


_UPSERT = """
INSERT INTO citypulse.maintenance_tickets AS t
    (entity_kind, entity_id, zone_id, problems, opened_at, updated_at, evidence,
     last_good_at, last_good)
SELECT k, i, z, string_to_array(p, ','), o, up, e, lg, lv
FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::timestamptz[],
            %s::timestamptz[], %s::jsonb[], %s::timestamptz[], %s::jsonb[])
     AS u(k, i, z, p, o, up, e, lg, lv)
ON CONFLICT (entity_kind, entity_id) WHERE status = 'open' DO UPDATE
SET problems = EXCLUDED.problems, updated_at = EXCLUDED.updated_at,
    evidence = EXCLUDED.evidence,
    zone_id = coalesce(EXCLUDED.zone_id, t.zone_id),
    last_good_at = coalesce(EXCLUDED.last_good_at, t.last_good_at),
    last_good = coalesce(EXCLUDED.last_good, t.last_good)
"""


def _context(conn: psycopg.Connection, keys: Iterable[tuple[str, str]], at: datetime
             ) -> dict[tuple[str, str], tuple[str | None, Any, Any]]:
    """(zone, last good reading time, its values) per device.

    A gateway's zone is its sensors' most common zone.
    """
    keys = list(keys)
    sensors = sorted(i for k, i in keys if k == "sensor")
    gws = sorted(i for k, i in keys if k == "gateway")
    out: dict[tuple[str, str], tuple] = {}
    if sensors:
        for sid, zone, t, vals in conn.execute(
                """SELECT s.sensor_id, coalesce(p.zone_id, s.props->>'zone_id'), r.time,
                          to_jsonb(ARRAY[r.v0, r.v1, r.v2, r.v3, r.v4, r.v5, r.v6, r.v7])
                   FROM citypulse.sensors s
                   LEFT JOIN citypulse.sensor_placement p ON p.sensor = s.id
                   LEFT JOIN LATERAL (SELECT * FROM citypulse.raw x WHERE x.sensor = s.id
                                      AND x.time <= %s ORDER BY x.time DESC LIMIT 1) r
                          ON true
                   WHERE s.sensor_id = ANY(%s)""", (at, sensors)):
            out[("sensor", sid)] = (zone, t, vals)
    if gws:
        for gid, zone, t in conn.execute(
                """SELECT s.gateway_id, mode() WITHIN GROUP (ORDER BY coalesce(p.zone_id,
                          s.props->>'zone_id')), g.last_seen
                   FROM citypulse.sensors s
                   LEFT JOIN citypulse.sensor_placement p ON p.sensor = s.id
                   LEFT JOIN citypulse.gateway_seen g ON g.gateway_id = s.gateway_id
                   WHERE s.gateway_id = ANY(%s) GROUP BY 1, 3""", (gws,)):
            out[("gateway", gid)] = (zone, t, None)
    return out


def sync(conn: psycopg.Connection, found: dict[tuple[str, str], dict[str, dict]],
         at: datetime | None = None) -> dict[str, int]:
    """Open/update a ticket per device found, close the others (``recovered``)."""
    at = at or datetime.now(UTC)
    ctx = _context(conn, found, at)
    keys = sorted(found)
    cols: list[list] = [[] for _ in range(9)]
    for k in keys:
        zone, t, vals = ctx.get(k, (None, None, None))
        probs = [p for p in PROBLEMS if p in found[k]]
        for col, v in zip(cols, (k[0], k[1], zone, ",".join(probs), at, at,
                                 orjson.dumps(found[k], default=str).decode(), t,
                                 None if vals is None else orjson.dumps(vals).decode()),
                          strict=True):
            col.append(v)
    with conn.transaction():
        before = conn.execute("SELECT count(*) FROM citypulse.maintenance_tickets "
                              "WHERE status = 'open'").fetchone()[0]
        if keys:
            conn.execute(_UPSERT, cols)
        closed = conn.execute(
            """UPDATE citypulse.maintenance_tickets SET status = 'closed', closed_at = %s,
                      close_reason = 'recovered', updated_at = %s
               WHERE status = 'open' AND NOT (entity_kind || ':' || entity_id = ANY(%s))""",
            (at, at, [f"{k}:{i}" for k, i in keys])).rowcount
    return {"open": len(keys), "opened": max(0, len(keys) - (before - closed)), "closed": closed}


def run(conn: psycopg.Connection, at: datetime | None = None) -> dict[str, int]:
    """Find upkeep at ``at`` and bring the tickets in step; returns counts."""
    at = at or datetime.now(UTC)
    return sync(conn, find(conn, at), at)


def open_tickets(conn: psycopg.Connection, limit: int = 5000) -> list[dict]:
    """Open tickets, grouped by zone.

    Each: id, zone, kind, device, problems, since, evidence, last_good_at, last_good.
    """
    try:
        rows = conn.execute(
            """SELECT id, coalesce(zone_id, ''), entity_kind, entity_id, problems, opened_at,
                      evidence, last_good_at, last_good FROM citypulse.maintenance_tickets
               WHERE status = 'open' ORDER BY 2, 3, 4 LIMIT %s""", (limit,)).fetchall()
    except psycopg.errors.UndefinedTable:
        return []
    return [{"id": i, "zone": z, "kind": k, "device": d, "problems": " ".join(p),
             "since": o.isoformat(), "evidence": orjson.dumps(e).decode(),
             "last_good_at": lg.isoformat() if lg else "", "last_good": lv}
            for i, z, k, d, p, o, e, lg, lv in rows]


def tickets_csv(items: Iterable[dict]) -> str:
    """Open tickets as CSV for field crews (columns ``CSV_FIELDS``)."""
    return maintenance.tickets_csv(items, CSV_FIELDS)
