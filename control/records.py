"""Command records in the store: insert, status transitions with their audit events, reads.

Every status change goes through :func:`transition`, which updates the command only from the
states it names (so two processes never both move a command), writes one row to
``citypulse.command_events`` (who, what, the alert it serves) and wakes the worker with
``NOTIFY citypulse_commands``.  Functions take an autocommit psycopg connection and run
their own transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

CHANNEL = "citypulse_commands"
ACTIVE = ("pending_approval", "queued", "sent", "delivered")
IN_FLIGHT = ("sent", "delivered")
TERMINAL = ("succeeded", "failed", "expired", "cancelled", "rejected")
STATUSES = ACTIVE + TERMINAL

COLUMNS = ("id", "seq", "device_id", "kind", "method", "params", "risk", "status",
           "requested_by", "approved_by", "alert_id", "fleet_id", "created_at", "expires_at",
           "attempts", "max_attempts", "sent_at", "delivered_at", "finished_at", "updated_at",
           "shadow_version", "result", "reason")
_COLS = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
_SELECT = sql.SQL("SELECT {} FROM citypulse.commands").format(_COLS)


def event(conn: psycopg.Connection, command_id: Any, action: str, by: str, status: str = "",
          alert_id: int | None = None, fleet_id: Any = None, detail: dict | None = None) -> None:
    """Append one audit event (inside the caller's transaction)."""
    conn.execute(
        "INSERT INTO citypulse.command_events (command_id, fleet_id, alert_id, action, status, "
        "by, detail) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (command_id, fleet_id, alert_id, action, status, by, Jsonb(detail or {})))


def notify(conn: psycopg.Connection, payload: str = "") -> None:
    """Wake the commands worker."""
    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))


def insert_many(conn: psycopg.Connection, recs: list[dict]) -> None:
    """Insert commands (dicts with the same keys of COLUMNS, but seq/updated_at), in order."""
    if not recs:
        return
    cols = [c for c in COLUMNS if c in recs[0] and c not in ("seq", "updated_at")]
    stmt = sql.SQL("INSERT INTO citypulse.commands ({}) VALUES ({}) ON CONFLICT DO NOTHING"
                   ).format(sql.SQL(", ").join(map(sql.Identifier, cols)),
                            sql.SQL(", ").join(sql.Placeholder() * len(cols)))
    with conn.cursor() as cur:
        cur.executemany(stmt, [[Jsonb(r[c]) if c in ("params", "result") else r[c]
                                for c in cols] for r in recs])


def transition(conn: psycopg.Connection, command_id: Any, to: str, frm: tuple[str, ...],
               by: str, action: str, reason: str | None = None, result: dict | None = None,
               extra: dict | None = None) -> dict | None:
    """Move a command from one of ``frm`` to ``to``; the updated record (None: not in ``frm``).

    Writes the audit event and notifies the worker, in one transaction.
    """
    sets = [sql.SQL("status = %(to)s, updated_at = now()")]
    if to in TERMINAL:
        sets.append(sql.SQL("finished_at = now()"))
    if to == "delivered":
        sets.append(sql.SQL("delivered_at = coalesce(delivered_at, now())"))
    if reason is not None:
        sets.append(sql.SQL("reason = %(reason)s"))
    if result is not None:
        sets.append(sql.SQL("result = %(result)s"))
    for k in extra or {}:
        sets.append(sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k)))
    params = {"to": to, "frm": list(frm), "id": command_id, "reason": reason,
              "result": Jsonb(result) if result is not None else None, **(extra or {})}
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql.SQL("UPDATE citypulse.commands SET {} WHERE id = %(id)s "
                            "AND status = ANY(%(frm)s) RETURNING {}").format(
                                sql.SQL(", ").join(sets), _COLS), params)
        row = cur.fetchone()
        if row is None:
            return None
        detail = {"from": list(frm), "reason": reason} if reason else {}
        if result:
            detail["result"] = result
        event(conn, row["id"], action, by, to, row["alert_id"], row["fleet_id"], detail)
        notify(conn, str(row["id"]))
    return row


def mark_sent(conn: psycopg.Connection, ids: list[Any], by: str) -> list[dict]:
    """Move many queued commands to ``sent`` at once (one transaction, one event each)."""
    if not ids:
        return []
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(sql.SQL(
            "UPDATE citypulse.commands SET status = 'sent', attempts = attempts + 1, "
            "sent_at = now(), updated_at = now() WHERE id = ANY(%s) AND status = 'queued' "
            "RETURNING {}").format(_COLS), (list(ids),)).fetchall()
        cur.execute(
            "INSERT INTO citypulse.command_events (command_id, fleet_id, alert_id, action, "
            "status, by) SELECT *, 'send', 'sent', %s FROM unnest(%s::uuid[], %s::uuid[], "
            "%s::bigint[])", (by, [r["id"] for r in rows], [r["fleet_id"] for r in rows],
                              [r["alert_id"] for r in rows]))
    return sorted(rows, key=lambda r: r["seq"])


def get(conn: psycopg.Connection, command_id: str | UUID) -> dict | None:
    """One command with its audit trail (``events``), or None."""
    try:
        cid = UUID(str(command_id))
    except ValueError:
        return None
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_SELECT + sql.SQL(" WHERE id = %s"), (cid,)).fetchone()
        if row is None:
            return None
        row["events"] = cur.execute(
            "SELECT at, action, status, by, alert_id, detail FROM citypulse.command_events "
            "WHERE command_id = %s ORDER BY id", (cid,)).fetchall()
    return row


def listing(conn: psycopg.Connection, limit: int = 200, status: str | None = None,
            device_id: str | None = None, alert_id: int | None = None,
            fleet_id: str | None = None, since: datetime | None = None) -> list[dict]:
    """Commands, newest first, filtered by any of status/device/alert/fleet/since."""
    where, args = [sql.SQL("true")], []
    for col, val in (("status", status), ("device_id", device_id), ("alert_id", alert_id),
                     ("fleet_id", fleet_id)):
        if val is not None:
            where.append(sql.SQL("{} = %s").format(sql.Identifier(col)))
            args.append(val)
    if since is not None:
        where.append(sql.SQL("created_at >= %s"))
        args.append(since)
    q = _SELECT + sql.SQL(" WHERE {} ORDER BY seq DESC LIMIT %s").format(
        sql.SQL(" AND ").join(where))
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(q, (*args, limit)).fetchall()


def jsonable(rec: dict) -> dict:
    """A record with ids and times as strings (for JSON output)."""
    out = {}
    for k, v in rec.items():
        if isinstance(v, UUID):
            v = str(v)
        elif isinstance(v, datetime):
            v = v.isoformat()
        elif isinstance(v, list):
            v = [jsonable(x) if isinstance(x, dict) else x for x in v]
        out[k] = v
    return out
