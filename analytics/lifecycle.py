"""Alert lifecycle in the store: open -> acknowledged -> resolved, escalation, audit trail.

In: a psycopg connection (autocommit or not; each call runs in its own transaction).
Out: frozen :class:`Alert` records.  One alert per (rule, entity) while not resolved is
enforced by a partial unique index; :func:`open_alert` returns None when one exists already.
Every change writes a row to ``citypulse.alert_events`` (who, when, what, note).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

OPEN, ACKNOWLEDGED, RESOLVED = "open", "acknowledged", "resolved"
SYSTEM = "citypulse"

_COLUMNS = (
    "id, rule, entity_kind, entity_id, severity, status, title, started_at, detected_at, "
    "updated_at, acknowledged_at, acknowledged_by, resolved_at, resolved_by, escalated_at, "
    "escalation_level, zone_id, lon, lat, geometry, scope, evidence"
)
_COLS = sql.SQL(_COLUMNS)


class AlertError(ValueError):
    """An operation that does not apply (unknown alert, already resolved...)."""


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert as stored."""

    id: int
    rule: str
    entity_kind: str
    entity_id: str
    severity: str
    status: str
    title: str
    started_at: datetime
    detected_at: datetime
    updated_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    escalated_at: datetime | None
    escalation_level: int
    zone_id: str
    lon: float | None
    lat: float | None
    geometry: dict | None
    scope: list
    evidence: dict

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (ISO-8601 times)."""
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, datetime):
                d[k] = v.isoformat()
        return d

    def message(self) -> dict[str, Any]:
        """The MQTT/webhook payload: id, rule, entity, place (GeoJSON), severity, status..."""
        ev = dict(self.evidence)
        return {
            "id": self.id,
            "rule": self.rule,
            "title": self.title,
            "entity": {"kind": self.entity_kind, "id": self.entity_id},
            "zone": self.zone_id,
            "place": {
                "type": "Feature",
                "geometry": self.geometry or (
                    {"type": "Point", "coordinates": [self.lon, self.lat]}
                    if self.lon is not None and self.lat is not None else None),
                "properties": {"zone": self.zone_id},
            },
            "severity": self.severity,
            "status": self.status,
            "started": self.started_at.isoformat(),
            "detected": self.detected_at.isoformat(),
            "escalation_level": self.escalation_level,
            "scope_size": len(self.scope),
            "scope": self.scope[:50],
            "evidence": {k: ev[k] for k in list(ev)[:12]},
        }


@dataclass(frozen=True, slots=True)
class NewAlert:
    """What the engine knows when it opens an alert."""

    rule: str
    entity_kind: str
    entity_id: str
    severity: str
    title: str
    started_at: datetime
    zone_id: str = "city"
    lon: float | None = None
    lat: float | None = None
    geometry: dict | None = None
    scope: tuple = ()
    evidence: dict | None = None


def _row(r: dict) -> Alert:
    return Alert(**r)


def _event(cur: psycopg.Cursor, alert_id: int, action: str, by: str, note: str = "",
           detail: dict | None = None, at: datetime | None = None) -> None:
    cur.execute(
        "INSERT INTO citypulse.alert_events (alert_id, at, action, by, note, detail) "
        "VALUES (%s, %s, %s, %s, %s, %s)",
        (alert_id, at or datetime.now(UTC), action, by, note or "", Jsonb(detail or {})))


def open_alert(conn: psycopg.Connection, new: NewAlert, now: datetime | None = None
               ) -> Alert | None:
    """Insert an open alert and its 'open' event; None if one is open for (rule, entity)."""
    now = now or datetime.now(UTC)
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "INSERT INTO citypulse.alerts (rule, entity_kind, entity_id, severity, title, "
            "started_at, detected_at, updated_at, zone_id, lon, lat, geometry, scope, evidence) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (rule, entity_kind, entity_id) WHERE status <> 'resolved' DO NOTHING "
            "RETURNING " + _COLUMNS,
            (new.rule, new.entity_kind, new.entity_id, new.severity, new.title,
             new.started_at, now, now, new.zone_id, new.lon, new.lat,
             Jsonb(new.geometry) if new.geometry else None, Jsonb(list(new.scope)),
             Jsonb(new.evidence or {})))
        r = cur.fetchone()
        if r is None:
            return None
        _event(cur, r["id"], "open", SYSTEM, detail={"evidence": new.evidence or {}}, at=now)
    return _row(r)


def update_alert(conn: psycopg.Connection, alert_id: int, *, evidence: dict | None = None,
                 scope: list | None = None, now: datetime | None = None,
                 place: tuple[float | None, float | None, dict | None] | None = None) -> None:
    """Refresh an unresolved alert's evidence, scope and/or place (no audit event: data only).

    ``place`` is (lon, lat, GeoJSON geometry); None parts are kept (an area alert's outline
    follows its members).  The history an alert took over when it opened
    (``evidence.supersedes``) is kept.
    """
    lon, lat, geometry = place or (None, None, None)
    conn.execute(
        "UPDATE citypulse.alerts SET updated_at = %s, "
        "evidence = COALESCE(%s::jsonb || jsonb_strip_nulls(jsonb_build_object("
        "'supersedes', evidence->'supersedes')), evidence), scope = COALESCE(%s, scope), "
        "lon = COALESCE(%s, lon), lat = COALESCE(%s, lat), geometry = COALESCE(%s, geometry) "
        "WHERE id = %s AND status <> 'resolved'",
        (now or datetime.now(UTC), Jsonb(evidence) if evidence is not None else None,
         Jsonb(scope) if scope is not None else None, lon, lat,
         Jsonb(geometry) if geometry is not None else None, alert_id))


def get_alert(conn: psycopg.Connection, alert_id: int) -> Alert | None:
    """One alert, or None."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql.SQL("SELECT {} FROM citypulse.alerts WHERE id = %s").format(_COLS),
                    (alert_id,))
        r = cur.fetchone()
    return _row(r) if r else None


def list_alerts(conn: psycopg.Connection, open_only: bool = True, limit: int = 500,
                since: datetime | None = None) -> list[Alert]:
    """Alerts, most severe and newest first; ``open_only`` = not resolved."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql.SQL(
            "SELECT {} FROM citypulse.alerts "
            "WHERE (NOT %s OR status <> 'resolved') AND (%s::timestamptz IS NULL "
            "OR started_at >= %s) ORDER BY (status = 'resolved'), "
            "array_position(ARRAY['critical','warning','info'], severity), started_at DESC "
            "LIMIT %s").format(_COLS), (open_only, since, since, limit))
        return [_row(r) for r in cur.fetchall()]


def alerts_open_at(conn: psycopg.Connection, at: datetime, limit: int = 500) -> list[Alert]:
    """Alerts that were open (not yet resolved) at time ``at``, most severe and newest first.

    Open at ``at`` means ``started_at <= at`` and (``resolved_at`` is null or after ``at``),
    whatever the alert's status is now: what a replay of ``at`` should show.
    """
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql.SQL(
            "SELECT {} FROM citypulse.alerts "
            "WHERE started_at <= %s AND (resolved_at IS NULL OR resolved_at > %s) "
            "ORDER BY array_position(ARRAY['critical','warning','info'], severity), "
            "started_at DESC LIMIT %s").format(_COLS), (at, at, limit))
        return [_row(r) for r in cur.fetchall()]


def events(conn: psycopg.Connection, alert_id: int) -> list[dict]:
    """The audit trail of one alert, oldest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT at, action, by, note, detail FROM citypulse.alert_events "
                    "WHERE alert_id = %s ORDER BY id", (alert_id,))
        return cur.fetchall()


def _transition(conn: psycopg.Connection, alert_id: int, action: str, by: str, note: str,
                set_sql: str, allowed: tuple[str, ...], params: tuple,
                now: datetime | None = None) -> Alert:
    if not by or not by.strip():
        raise AlertError("say who does it (--by NAME)")
    now = now or datetime.now(UTC)
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT status FROM citypulse.alerts WHERE id = %s FOR UPDATE", (alert_id,))
        r = cur.fetchone()
        if r is None:
            raise AlertError(f"no alert {alert_id}")
        if r["status"] not in allowed:
            raise AlertError(f"alert {alert_id} is {r['status']}; cannot {action}")
        cur.execute(sql.SQL("UPDATE citypulse.alerts SET updated_at = %s, {} WHERE id = %s "
                            "RETURNING {}").format(sql.SQL(set_sql), _COLS),
                    (now, *params, alert_id))
        row = cur.fetchone()
        _event(cur, alert_id, action, by, note, at=now)
    return _row(row)


def acknowledge(conn: psycopg.Connection, alert_id: int, by: str, note: str = "",
                now: datetime | None = None) -> Alert:
    """Move open -> acknowledged, recording who and when."""
    now = now or datetime.now(UTC)
    return _transition(conn, alert_id, "acknowledge", by, note,
                       "status = 'acknowledged', acknowledged_at = %s, acknowledged_by = %s",
                       (OPEN,), (now, by), now)


def resolve(conn: psycopg.Connection, alert_id: int, by: str, note: str = "",
            now: datetime | None = None, action: str = "resolve") -> Alert:
    """Move open|acknowledged -> resolved (by a person, or ``auto_resolve`` by the engine)."""
    now = now or datetime.now(UTC)
    return _transition(conn, alert_id, action, by, note,
                       "status = 'resolved', resolved_at = %s, resolved_by = %s",
                       (OPEN, ACKNOWLEDGED), (now, by), now)


def escalate(conn: psycopg.Connection, alert_id: int, by: str, note: str = "",
             now: datetime | None = None) -> Alert:
    """Raise an unresolved alert's escalation level (severity becomes critical)."""
    now = now or datetime.now(UTC)
    return _transition(conn, alert_id, "escalate", by, note,
                       "escalated_at = %s, escalation_level = escalation_level + 1, "
                       "severity = 'critical'", (OPEN, ACKNOWLEDGED), (now,), now)


def due_for_escalation(conn: psycopg.Connection, after_s: float,
                       now: datetime | None = None) -> list[int]:
    """Open (unacknowledged) critical alerts older than ``after_s`` and never escalated."""
    now = now or datetime.now(UTC)
    rows = conn.execute(
        "SELECT id FROM citypulse.alerts WHERE status = 'open' AND severity = 'critical' "
        "AND escalated_at IS NULL AND detected_at <= %s - make_interval(secs => %s)",
        (now, after_s)).fetchall()
    return [r[0] for r in rows]
