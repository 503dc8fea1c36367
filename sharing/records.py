"""Approval references and the policy log (tables of migration 060).

In: a psycopg connection.  Out: :func:`record_approval` / :func:`revoke_approval` /
:func:`active_approval` / :func:`list_approvals` for the formal route's references
(security assessment, standard-contract filing, certification) per scenario, and
:func:`log_policy` which records a new policy version with its diff to the previous one.
"""

from __future__ import annotations

import difflib

import psycopg
from psycopg.rows import dict_row

ROUTES = ("security_assessment", "standard_contract", "certification")


def record_approval(conn: psycopg.Connection, scenario: str, reference: str, route: str,
                    by: str, note: str = "") -> int:
    """Record an approval reference for ``scenario``; returns its id."""
    if route not in ROUTES:
        raise ValueError(f"unknown route {route!r}; use one of {', '.join(ROUTES)}")
    if not reference.strip():
        raise ValueError("an approval needs its reference (assessment or filing number)")
    return conn.execute(
        "INSERT INTO citypulse_share.approvals (scenario, reference, route, note, recorded_by) "
        "VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (scenario, reference.strip(), route, note, by)).fetchone()[0]


def revoke_approval(conn: psycopg.Connection, scenario: str, by: str) -> int:
    """Revoke every active approval of ``scenario``; returns how many."""
    return conn.execute(
        "UPDATE citypulse_share.approvals SET revoked_by = %s, revoked_at = now() "
        "WHERE scenario = %s AND revoked_at IS NULL", (by, scenario)).rowcount


def active_approval(conn: psycopg.Connection, scenario: str) -> str | None:
    """The latest unrevoked approval reference of ``scenario``."""
    row = conn.execute(
        "SELECT reference FROM citypulse_share.approvals WHERE scenario = %s AND "
        "revoked_at IS NULL ORDER BY id DESC LIMIT 1", (scenario,)).fetchone()
    return row[0] if row else None


def list_approvals(conn: psycopg.Connection) -> list[dict]:
    """Every approval, newest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM citypulse_share.approvals ORDER BY id DESC").fetchall()


def log_policy(conn: psycopg.Connection, policy, by: str) -> dict | None:
    """Record ``policy`` if it differs from the last logged version; returns the new entry."""
    last = conn.execute("SELECT policy_hash, canonical FROM citypulse_share.policy_log "
                        "ORDER BY id DESC LIMIT 1").fetchone()
    if last is not None and last[0] == policy.hash:
        return None
    old = last[1] if last else ""
    diff = "".join(difflib.unified_diff(old.splitlines(True), policy.canonical.splitlines(True),
                                        "previous policy", "policy now", n=2))
    row = conn.execute(
        "INSERT INTO citypulse_share.policy_log (policy_hash, prev_hash, canonical, diff, "
        "seen_by) VALUES (%s, %s, %s, %s, %s) RETURNING id, at",
        (policy.hash, last[0] if last else None, policy.canonical, diff, by)).fetchone()
    return {"id": row[0], "at": row[1], "policy_hash": policy.hash, "diff": diff}


def policy_log(conn: psycopg.Connection, limit: int = 20) -> list[dict]:
    """The latest policy versions with their diffs, newest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT id, at, policy_hash, prev_hash, diff, seen_by FROM "
                           "citypulse_share.policy_log ORDER BY id DESC LIMIT %s",
                           (limit,)).fetchall()
