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


ANSWERS = {"received": ("delivered", "receive", ("sent",)),
           "ok": ("succeeded", "ok", IN_FLIGHT), "error": ("failed", "error", IN_FLIGHT)}


def apply_answers(conn: psycopg.Connection, answers: list[tuple]) -> int:
    """Apply devices' answers ``(id, device_id, "received"|"ok"|"error", result, reason)``.

    An answer counts only from the device the command was sent to and only from the states
    it may follow (a re-delivered ``ok`` for a settled command changes nothing).  All
    ``received`` first, then the outcomes, each step one statement; returns rows changed.
    """
    changed = 0
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        for step in ("received", "outcome"):
            todo = [a for a in answers if (a[2] == "received") == (step == "received")]
            if not todo:
                continue
            to = [ANSWERS[a[2]][0] for a in todo]
            rows = cur.execute(
                "UPDATE citypulse.commands c SET status = u.new_status, updated_at = now(), "
                "delivered_at = coalesce(c.delivered_at, now()), "
                "finished_at = CASE WHEN u.new_status = 'delivered' THEN NULL ELSE now() END, "
                "result = CASE WHEN u.new_status = 'delivered' THEN c.result ELSE u.result END, "
                "reason = CASE WHEN u.new_status = 'delivered' THEN c.reason ELSE u.reason END "
                "FROM (SELECT DISTINCT ON (id) * FROM unnest(%s::uuid[], %s::text[], %s::text[], "
                "%s::jsonb[], %s::text[]) AS x(id, device, new_status, result, reason)) u "
                "WHERE c.id = u.id AND c.device_id = u.device AND (c.status = 'sent' OR "
                "(u.new_status <> 'delivered' AND c.status = 'delivered')) "
                "RETURNING c.id, c.fleet_id, c.alert_id, c.status, c.device_id, c.reason",
                ([a[0] for a in todo], [a[1] for a in todo], to,
                 [Jsonb(a[3]) for a in todo], [a[4] for a in todo])).fetchall()
            action = {"delivered": "receive", "succeeded": "ok", "failed": "error"}
            cur.execute(
                "INSERT INTO citypulse.command_events (command_id, fleet_id, alert_id, action, "
                "status, by, detail) SELECT * FROM unnest(%s::uuid[], %s::uuid[], "
                "%s::bigint[], %s::text[], %s::text[], %s::text[], %s::jsonb[])",
                ([r["id"] for r in rows], [r["fleet_id"] for r in rows],
                 [r["alert_id"] for r in rows], [action[r["status"]] for r in rows],
                 [r["status"] for r in rows], [r["device_id"] for r in rows],
                 [Jsonb({"reason": r["reason"]} if r["status"] == "failed" else {})
                  for r in rows]))
            changed += len(rows)
    return changed


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
