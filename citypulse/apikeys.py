"""API keys: the one machine credential (HTTP ingest, sharing recipients, standard APIs).

In: a psycopg connection to a migrated database (table ``citypulse.api_keys``, migration
050).  Out: keys that are created once (the secret is returned a single time and only its
SHA-256 is stored), verified, listed (never the hash) and revoked::

    info, secret = create(conn, "ingest-gw1", ["ingest:gateway"], created_by="admin")
    verify(conn, secret)         # KeyInfo, or None when unknown, revoked or expired
    info.allows("ingest:gateway")
    revoke(conn, "ingest-gw1")

A secret looks like ``cpk_<prefix>_<random>``: the prefix (8 hex digits, unique, shown in
listings) finds the row, the 256-bit random part is what proves possession.  Scopes are
``area:thing`` strings; a granted ``area:*`` covers every ``area:...``.  Foundation layer:
no Flask here (dashboards/auth.py adds the HTTP side).  Secrets are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

SECRET_PREFIX = "cpk_"
_SECRET_RE = re.compile(r"^cpk_([0-9a-f]{8})_([A-Za-z0-9_-]{43})$")
_SCOPE_RE = re.compile(r"^[a-z][a-z0-9_-]*:(\*|[A-Za-z0-9_.*-][A-Za-z0-9_.:/*-]*)$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")
TOUCH_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often per key


@dataclass(frozen=True)
class KeyInfo:
    """A verified key: what it is called and what it may do (never the secret)."""

    id: int
    name: str
    scopes: tuple[str, ...]
    prefix: str

    def allows(self, scope: str) -> bool:
        """Exact match, or a granted ``area:*`` covers ``area:anything``."""
        area = scope.split(":", 1)[0]
        return any(s == scope or s == f"{area}:*" for s in self.scopes)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_scope(scope: str) -> str:
    """``scope`` if well formed (``area:thing`` or ``area:*``), else ValueError with the fix."""
    if not _SCOPE_RE.match(scope or ""):
        raise ValueError(f"bad scope {scope!r}: use area:name (e.g. ingest:gateway, "
                         "share:flood-response, api:read) or area:*")
    return scope


def create(conn: psycopg.Connection, name: str, scopes: Sequence[str], created_by: str,
           expires_at: datetime | None = None) -> tuple[KeyInfo, str]:
    """Store a new key; return its info and the secret (shown once, stored only hashed).

    ValueError for a bad name or scope, or a name already taken.
    """
    if not _NAME_RE.match(name or ""):
        raise ValueError(f"bad key name {name!r}: letters, digits, _ . @ - (at most 100)")
    scopes = tuple(dict.fromkeys(check_scope(s) for s in scopes))
    if not scopes:
        raise ValueError("a key needs at least one scope (--scope area:name)")
    if expires_at is not None and expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    for _ in range(5):  # prefixes are random: retry the rare collision
        prefix = secrets.token_hex(4)
        secret = f"{SECRET_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        try:
            with conn.transaction():
                row = conn.execute(
                    """INSERT INTO citypulse.api_keys (name, prefix, hash, scopes, created_by,
                                                       expires_at)
                       VALUES (%s, %s, %s, %s, %s, %s) RETURNING id""",
                    (name, prefix, _digest(secret), list(scopes), created_by, expires_at),
                ).fetchone()
        except psycopg.errors.UniqueViolation as exc:
            if "name" in str(exc.diag.constraint_name or ""):
                raise ValueError(f"an API key named {name!r} exists; revoke it or pick "
                                 "another name") from None
            continue
        return KeyInfo(row[0], name, scopes, prefix), secret
    raise RuntimeError("could not draw a unique key prefix")


def verify(conn: psycopg.Connection, presented: str | None) -> KeyInfo | None:
    """The key's info if ``presented`` is a live key; None if unknown, revoked or expired."""
    m = _SECRET_RE.match((presented or "").strip())
    if not m:
        return None
    row = conn.execute(
        """SELECT id, name, scopes, hash, revoked_at IS NULL
                  AND (expires_at IS NULL OR expires_at > now()),
                  last_used_at IS NULL OR last_used_at < now() - %s
           FROM citypulse.api_keys WHERE prefix = %s""",
        (TOUCH_EVERY, m.group(1))).fetchone()
    if row is None:
        return None
    key_id, name, scopes, stored, live, stale = row
    if not hmac.compare_digest(stored, _digest(presented.strip())) or not live:
        return None
    if stale:
        conn.execute("UPDATE citypulse.api_keys SET last_used_at = now() WHERE id = %s",
                     (key_id,))
        if not conn.autocommit:
            conn.commit()
    return KeyInfo(key_id, name, tuple(scopes), m.group(1))


def revoke(conn: psycopg.Connection, name: str) -> bool:
    """Revoke the key called ``name``; False if there is no such live key."""
    with conn.transaction():
        cur = conn.execute(
            "UPDATE citypulse.api_keys SET revoked_at = now() "
            "WHERE name = %s AND revoked_at IS NULL", (name,))
    return cur.rowcount == 1


def list_keys(conn: psycopg.Connection) -> list[dict]:
    """Every key (revoked ones too) with its scopes and times; never the hash."""
    cur = conn.execute(
        """SELECT id, name, prefix, scopes, created_by, created_at, expires_at, revoked_at,
                  last_used_at FROM citypulse.api_keys ORDER BY name""")
    cols = [d.name for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
