"""Requesting, approving, rejecting and cancelling commands (what the CLI and HTTP call).

Every function takes an autocommit psycopg connection, the settings and the caller
(``by``, ``role``), checks the policy, persists the outcome with its audit events and
returns the command record(s).  Nothing is sent here: the worker sends what is ``queued``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from citypulse.actuators import ParamsError, method
from citypulse.settings import Settings
from control import policy, records, targets


class ControlError(ValueError):
    """A request that cannot be carried out (unknown device/method, bad params, state)."""


class StateError(ControlError):
    """The command's state does not allow this (e.g. cancelling one already sent)."""


def _new_record(dev: dict, m: Any, params: dict, by: str, alert_id: int | None,
                expires_at: datetime, settings: Settings, fleet_id: Any = None) -> dict:
    return {"id": uuid.uuid4(), "device_id": dev["device_id"], "kind": dev["kind"],
            "method": m.name, "params": params, "risk": m.risk, "requested_by": by,
            "alert_id": alert_id, "fleet_id": fleet_id, "expires_at": expires_at,
            "max_attempts": settings.commands_max_attempts}


def _admit(conn: psycopg.Connection, recs: list[dict], devs: list[dict], m: Any, by: str,
           settings: Settings) -> list[dict]:
    """Insert requests and their first decision: rejected, pending_approval or queued."""
    out, events = [], []
    reasons = policy.check_many(conn, m.precondition, devs, settings)
    for rec, reason in zip(recs, reasons, strict=True):
        if reason:
            status, action = "rejected", "reject"
        elif policy.needs_approval(m.risk):
            status, action = "pending_approval", "await_approval"
        else:
            status, action = "queued", "queue"
        rec = {**rec, "status": status, "reason": reason or ""}
        out.append(rec)
        events.append((rec["id"], rec["fleet_id"], rec["alert_id"], "request", "", by,
                       Jsonb({"device_id": rec["device_id"], "method": m.name,
                              "params": rec["params"]})))
        events.append((rec["id"], rec["fleet_id"], rec["alert_id"], action, status, "policy",
                       Jsonb({"reason": reason} if reason else {"risk": m.risk})))
    records.insert_many(conn, out)
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO citypulse.command_events (command_id, fleet_id, alert_id, "
                        "action, status, by, detail) VALUES (%s, %s, %s, %s, %s, %s, %s)", events)
    return out


def _method(kind: str, name: str, params: Any) -> tuple[Any, dict]:
    try:
        m = method(kind, name)
        return m, m.validate(params)
    except (KeyError, ParamsError) as exc:
        raise ControlError(exc.args[0]) from None


def request(conn: psycopg.Connection, settings: Settings, device_id: str, method_name: str,
            params: Any = None, *, by: str, role: str | None, expires_in_s: float | None = None,
            alert_id: int | None = None) -> dict:
    """Request one command to one device; returns its record (``status`` says what happened)."""
    policy.require_command_role(by, role)
    try:
        dev = targets.device(conn, device_id)
    except targets.TargetError as exc:
        raise ControlError(str(exc)) from None
    m, params = _method(dev["kind"], method_name, params)
    expires = datetime.now(UTC) + timedelta(seconds=expires_in_s or settings.commands_expires_s)
    with conn.transaction():
        [rec] = _admit(conn, [_new_record(dev, m, params, by, alert_id, expires, settings)],
                       [dev], m, by, settings)
        records.notify(conn)
    return records.get(conn, rec["id"])


def fleet(conn: psycopg.Connection, settings: Settings, kind: str, method_name: str,
          target: dict, params: Any = None, *, by: str, role: str | None,
          expires_in_s: float | None = None, alert_id: int | None = None,
          rate_per_s: float | None = None, abort_pct: float | None = None) -> dict:
    """A fleet command: one command per device of ``kind`` the target names.

    All are persisted in one transaction; the worker fans them out at ``rate_per_s``,
    aborting past ``abort_pct`` failures.  Returns ``{"fleet_id", "devices", "by_status"}``.
    """
    policy.require_command_role(by, role)
    m, params = _method(kind, method_name, params)
    if "alert" in target and alert_id is None:
        alert_id = int(target["alert"])
    try:
        devices = targets.resolve(conn, target, kind)
    except targets.TargetError as exc:
        raise ControlError(str(exc)) from None
    if not devices:
        raise ControlError(f"no {kind} devices in {target}")
    fid = uuid.uuid4()
    expires = datetime.now(UTC) + timedelta(seconds=expires_in_s or settings.commands_expires_s)
    counts: dict[str, int] = {}
    with conn.transaction():
        conn.execute(
            "INSERT INTO citypulse.command_fleets (id, kind, method, params, target, rate_per_s, "
            "abort_pct, devices, requested_by, alert_id) VALUES (%s, %s, %s, %s, %s, %s, %s, "
            "%s, %s, %s)",
            (fid, kind, m.name, Jsonb(params), Jsonb(target),
             rate_per_s or settings.commands_fleet_rate,
             settings.commands_abort_pct if abort_pct is None else abort_pct,
             len(devices), by, alert_id))
        records.event(conn, None, "fleet_request", by, "", alert_id, fid,
                      {"kind": kind, "method": m.name, "target": target, "devices": len(devices)})
        recs = [_new_record(dev, m, params, by, alert_id, expires, settings, fid)
                for dev in devices]
        for rec in _admit(conn, recs, devices, m, by, settings):
            counts[rec["status"]] = counts.get(rec["status"], 0) + 1
        records.notify(conn)
    return {"fleet_id": str(fid), "devices": [d["device_id"] for d in devices],
            "by_status": counts, "alert_id": alert_id}


def _ids(conn: psycopg.Connection, ident: str) -> list[Any]:
    """Command ids named by ``ident``: one command, or every command of a fleet."""
    try:
        uid = uuid.UUID(str(ident))
    except ValueError:
        raise ControlError(f"{ident!r} is not a command or fleet id") from None
    rows = conn.execute("SELECT id FROM citypulse.commands WHERE id = %s OR fleet_id = %s "
                        "ORDER BY seq", (uid, uid)).fetchall()
    if not rows:
        raise ControlError(f"no command or fleet {ident}")
    return [r[0] for r in rows]


def approve(conn: psycopg.Connection, settings: Settings, ident: str, *, by: str,
            role: str | None) -> list[dict]:
    """Approve a pending command (or every pending command of a fleet): a second person.

    The precondition is checked again (the situation may have changed since the request).
    """
    policy.require_command_role(by, role)
    out = []
    for cid in _ids(conn, ident):
        cur = records.get(conn, cid)
        if cur["status"] != "pending_approval":
            if len(out) == 0 and cur["fleet_id"] is None:
                raise StateError(f"command {cid} is {cur['status']}, not pending_approval")
            continue
        policy.check_approver(cur["requested_by"], by)
        dev = targets.device(conn, cur["device_id"])
        reason = policy.check(conn, method(cur["kind"], cur["method"]).precondition, dev,
                              settings)
        if reason:
            rec = records.transition(conn, cid, "rejected", ("pending_approval",), "policy",
                                     "reject", reason=reason)
        else:
            rec = records.transition(conn, cid, "queued", ("pending_approval",), by, "approve",
                                     extra={"approved_by": by})
        if rec:
            out.append(rec)
    return out


def reject(conn: psycopg.Connection, settings: Settings, ident: str, *, by: str,
           role: str | None, note: str = "") -> list[dict]:
    """Refuse a pending command (or a fleet's pending commands)."""
    policy.require_command_role(by, role)
    out = []
    for cid in _ids(conn, ident):
        rec = records.transition(conn, cid, "rejected", ("pending_approval",), by, "reject",
                                 reason=f"rejected by {by}" + (f": {note}" if note else ""))
        if rec:
            out.append(rec)
    return out


def cancel(conn: psycopg.Connection, settings: Settings, ident: str, *, by: str,
           role: str | None) -> list[dict]:
    """Cancel a command (or a fleet's commands) not sent yet; sent ones cannot be recalled."""
    policy.require_command_role(by, role)
    out = []
    ids = _ids(conn, ident)
    for cid in ids:
        rec = records.transition(conn, cid, "cancelled", ("pending_approval", "queued"), by,
                                 "cancel", reason=f"cancelled by {by}")
        if rec:
            out.append(rec)
    if not out and len(ids) == 1:
        cur = records.get(conn, ids[0])
        raise StateError(f"command {ids[0]} is {cur['status']}: only a command not yet sent "
                           "can be cancelled")
    conn.execute("UPDATE citypulse.command_fleets SET status = 'cancelled', finished_at = now() "
                 "WHERE id = ANY(%s) AND status = 'running'", ([_as_uuid(ident)],))
    return out


def _as_uuid(ident: str) -> uuid.UUID:
    return uuid.UUID(str(ident))


def suggestions(alert: dict, rules: Any = None) -> list[dict]:
    """Commands the rules file offers for an alert of ``alert["rule"]`` (``actions:`` map)."""
    if rules is None:
        from analytics import load_rules

        rules = load_rules(settings_rules_file())
    return [{"kind": a.kind, "method": a.method, "params": dict(a.params),
             "label": a.label or f"{a.method} {a.kind}",
             "risk": method(a.kind, a.method).risk}
            for a in rules.actions.get(alert["rule"], [])]


def settings_rules_file() -> Any:
    """The configured rules file (None: the shipped one)."""
    from citypulse.settings import load_settings

    return load_settings().rules_file
