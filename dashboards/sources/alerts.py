"""Alerts for the dashboards (analytics' lifecycle and evidence), and the dashboards' audit.

In: a psycopg connection; for actions the operator (role checked by the caller).  Out:
alerts as dicts, evidence series and trails; actions recorded in ``dashboard_audit``.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

import psycopg

import analytics

ALERT_ACTIONS = ("acknowledge", "escalate", "resolve")


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
