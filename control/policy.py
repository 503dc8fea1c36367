"""Safety policy: who may command, what needs two people, and preconditions on telemetry.

- Roles: ``viewer`` never commands; ``operator`` and ``admin`` request, approve and cancel.
- Two-person rule: a ``high`` risk method waits in ``pending_approval`` until another
  operator approves it; the requester cannot approve their own request.
- Preconditions: a method names one (:mod:`citypulse.actuators`); the check here runs
  against the device's latest telemetry and open alerts, before the command is queued and
  again when it is approved.  A check is a function ``(conn, device, settings) -> reason |
  None`` registered with :func:`precondition`; a reason rejects the command.  A check may
  also register a batched form (:data:`BATCHED`, one query for a whole fleet), which
  :func:`check_many` prefers.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

from citypulse.catalogue import device_kind
from citypulse.settings import Settings

ROLES = ("viewer", "operator", "admin")  # the dashboards' roles, lowest first
COMMAND_ROLE = "operator"

Check = Callable[[psycopg.Connection, dict, Settings], str | None]
PRECONDITIONS: dict[str, Check] = {}
Many = Callable[[psycopg.Connection, list[dict], Settings], list[str | None]]
BATCHED: dict[str, Many] = {}


class PolicyError(PermissionError):
    """The caller may not do this (role, or the two-person rule)."""


def may_command(role: str | None) -> bool:
    """Whether ``role`` may request, approve or cancel commands."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(COMMAND_ROLE)


def require_command_role(user: str, role: str | None) -> None:
    """Raise :class:`PolicyError` unless ``role`` may command."""
    if not user:
        raise PolicyError("a command needs the name of the person asking for it")
    if not may_command(role):
        raise PolicyError(f"{user} ({role}) may not command devices: needs {COMMAND_ROLE}")


def needs_approval(risk: str) -> bool:
    """High-risk methods need a second person."""
    return risk == "high"


def check_approver(requested_by: str, approver: str) -> None:
    """Raise :class:`PolicyError` when the approver is the requester."""
    if approver.strip().lower() == requested_by.strip().lower():
        raise PolicyError(f"{approver} requested this command and cannot approve it: "
                          "a second operator must")


def precondition(name: str) -> Callable[[Check], Check]:
    """Register a precondition check under ``name``."""
    def deco(fn: Check) -> Check:
        PRECONDITIONS[name] = fn
        return fn
    return deco


def check(conn: psycopg.Connection, name: str | None, device: dict,
          settings: Settings) -> str | None:
    """The reason the precondition ``name`` fails for ``device``, or None when it holds."""
    if name is None:
        return None
    fn = PRECONDITIONS.get(name)
    if fn is None:
        return f"unknown precondition {name!r}: refusing to command without it"
    return fn(conn, device, settings)


def check_many(conn: psycopg.Connection, name: str | None, devices: list[dict],
               settings: Settings) -> list[str | None]:
    """:func:`check` for each of ``devices`` (batched where the check has a batched form)."""
    if name is None:
        return [None] * len(devices)
    if name in BATCHED:
        return BATCHED[name](conn, devices, settings)
    return [check(conn, name, d, settings) for d in devices]


def latest_values(conn: psycopg.Connection, devices: list[dict], metric: str,
                  max_age_s: float) -> dict[int, tuple[float, datetime]]:
    """Each device's latest reading of ``metric`` within ``max_age_s`` (by device ``id``)."""
    since = datetime.now(UTC) - timedelta(seconds=max_age_s)
    by_slot: dict[int, list[int]] = {}
    for d in devices:
        by_slot.setdefault(device_kind(d["kind"]).slot_of[metric], []).append(d["id"])
    out: dict[int, tuple[float, datetime]] = {}
    for slot, ids in by_slot.items():
        col = sql.Identifier(f"v{slot}")
        for sensor, value, at in conn.execute(sql.SQL(
                "SELECT DISTINCT ON (sensor) sensor, {c}, time FROM citypulse.raw "
                "WHERE sensor = ANY(%s) AND time >= %s AND {c} IS NOT NULL "
                "ORDER BY sensor, time DESC").format(c=col), (ids, since)):
            out[sensor] = (value, at)
    return out


def latest_value(conn: psycopg.Connection, device: dict, metric: str,
                 max_age_s: float) -> tuple[float, datetime] | None:
    """The device's latest reading of ``metric`` within ``max_age_s``, or None."""
    return latest_values(conn, [device], metric, max_age_s).get(device["id"])


@precondition("sump_not_dry")
def _sump_not_dry(conn: psycopg.Connection, device: dict, settings: Settings) -> str | None:
    return _sump_not_dry_many(conn, [device], settings)[0]


def _sump_not_dry_many(conn: psycopg.Connection, devices: list[dict],
                       settings: Settings) -> list[str | None]:
    got = latest_values(conn, devices, "sump_level_m", settings.commands_telemetry_max_age_s)
    return [_sump_reason(d, got.get(d["id"]), settings) for d in devices]


BATCHED["sump_not_dry"] = _sump_not_dry_many


def _sump_reason(device: dict, got: tuple[float, datetime] | None,
                 settings: Settings) -> str | None:
    if got is None:
        return (f"no sump level from {device['device_id']} in the last "
                f"{settings.commands_telemetry_max_age_s:g} s: cannot tell the sump is not dry")
    if got[0] < settings.commands_sump_min_m:
        return (f"sump dry: {device['device_id']} reports {got[0]:.2f} m < "
                f"{settings.commands_sump_min_m:g} m (a dry-running pump is damaged)")
    return None


@precondition("critical_alert_in_zone")
def _critical_alert(conn: psycopg.Connection, device: dict, settings: Settings) -> str | None:
    zone = device.get("zone_id")
    if not zone:
        return f"{device['device_id']} is not placed in a zone: no alert can justify it"
    row = conn.execute(
        "SELECT id FROM citypulse.alerts WHERE status <> 'resolved' AND severity = 'critical' "
        "AND (zone_id = %s OR scope @> to_jsonb(ARRAY[%s::text])) LIMIT 1",
        (zone, zone)).fetchone()
    if row is None:
        return f"no open critical alert in zone {zone}: a siren needs one"
    return None
