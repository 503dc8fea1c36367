"""API keys (citypulse/apikeys.py, migration 050) on a real PostgreSQL, and `citypulse keys`."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from citypulse import apikeys
from tests.production.integration.test_roles import login_as


def test_create_verify_scopes_and_hash_only(db):
    info, secret = apikeys.create(db, "gw-east", ["ingest:gateway", "share:*"], "admin")
    assert secret.startswith(f"cpk_{info.prefix}_") and len(secret) > 50
    stored = db.execute("SELECT hash FROM citypulse.api_keys WHERE name = 'gw-east'").fetchone()[0]
    assert len(stored) == 64 and secret not in stored and "_" not in stored
    got = apikeys.verify(db, secret)
    assert got == info
    assert got.allows("ingest:gateway") and got.allows("share:flood") and got.allows("share:x:y")
    assert not got.allows("ingest:other") and not got.allows("api:read")
    # a wrong random part with the right prefix, garbage, nothing
    assert apikeys.verify(db, secret[:-4] + "AAAA") is None
    assert apikeys.verify(db, "cpk_00000000_" + "A" * 43) is None
    assert apikeys.verify(db, "nonsense") is None and apikeys.verify(db, None) is None
    listed = apikeys.list_keys(db)
    assert [k["name"] for k in listed] == ["gw-east"]
    assert "hash" not in listed[0] and secret not in repr(listed)
    assert listed[0]["last_used_at"] is not None  # set by verify


def test_last_used_is_written_at_most_once_a_minute(db):
    _info, secret = apikeys.create(db, "k", ["api:read"], "admin")
    apikeys.verify(db, secret)
    first = db.execute("SELECT last_used_at FROM citypulse.api_keys").fetchone()[0]
    apikeys.verify(db, secret)
    assert db.execute("SELECT last_used_at FROM citypulse.api_keys").fetchone()[0] == first
    db.execute("UPDATE citypulse.api_keys SET last_used_at = now() - interval '2 minutes'")
    apikeys.verify(db, secret)
    assert db.execute("SELECT last_used_at FROM citypulse.api_keys").fetchone()[0] > first


def test_revoked_and_expired_keys_fail(db):
    _a, sa = apikeys.create(db, "a", ["api:read"], "admin")
    _b, sb = apikeys.create(db, "b", ["api:read"], "admin",
                            expires_at=datetime.now(UTC) - timedelta(seconds=1))
    _c, sc = apikeys.create(db, "c", ["api:read"], "admin",
                            expires_at=datetime.now(UTC) + timedelta(days=1))
    assert apikeys.revoke(db, "a") and not apikeys.revoke(db, "a")
    assert not apikeys.revoke(db, "nobody")
    assert apikeys.verify(db, sa) is None
    assert apikeys.verify(db, sb) is None
    assert apikeys.verify(db, sc) is not None


def test_bad_names_scopes_and_duplicates_are_refused(db):
    apikeys.create(db, "dup", ["api:read"], "admin")
    with pytest.raises(ValueError, match="exists"):
        apikeys.create(db, "dup", ["api:read"], "admin")
    with pytest.raises(ValueError, match="bad scope"):
        apikeys.create(db, "x", ["read everything"], "admin")
    with pytest.raises(ValueError, match="at least one scope"):
        apikeys.create(db, "x", [], "admin")
    with pytest.raises(ValueError, match="bad key name"):
        apikeys.create(db, "x y", ["api:read"], "admin")


def test_only_the_dashboard_role_reads_keys_and_only_touches_last_used(db, db_url):
    _info, secret = apikeys.create(db, "k", ["api:read"], "admin")
    with psycopg.connect(login_as(db_url, db, "citypulse_dashboard"), autocommit=True) as conn:
        assert apikeys.verify(conn, secret) is not None
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE citypulse.api_keys SET revoked_at = NULL")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO citypulse.api_keys (name, prefix, hash, scopes, created_by)"
                          " VALUES ('x', 'y', 'z', '{a:b}', 'me')")
    for group in ("citypulse_worker", "citypulse_collector"):
        with psycopg.connect(login_as(db_url, db, group), autocommit=True) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT hash FROM citypulse.api_keys")
    # a later migration re-applying the grants does not open the table again
    db.execute("SELECT citypulse.apply_role_grants()")
    with psycopg.connect(login_as(db_url, db, "citypulse_worker"), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT hash FROM citypulse.api_keys")


def _keys(db_url: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, CITYPULSE_DATABASE_URL=db_url)
    return subprocess.run([sys.executable, "-m", "citypulse", "keys", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_keys_cli_create_list_revoke(db, db_url):
    r = _keys(db_url, "create", "recipient-1", "--scope", "share:flood", "--scope", "api:read",
              "--expires-in-days", "30", "--by", "ops")
    assert r.returncode == 0, r.stderr
    secret = r.stdout.strip()
    assert secret.startswith("cpk_") and "\n" not in secret
    info = apikeys.verify(db, secret)
    assert info.name == "recipient-1" and info.scopes == ("share:flood", "api:read")
    r = _keys(db_url, "list", "--json")
    import json

    rows = json.loads(r.stdout)
    assert rows[0]["name"] == "recipient-1" and rows[0]["created_by"] == "ops"
    assert rows[0]["expires_at"] and secret not in r.stdout and "hash" not in rows[0]
    assert "recipient-1" in _keys(db_url, "list").stdout
    bad = _keys(db_url, "create", "x", "--scope", "nope")
    assert bad.returncode == 2 and "bad scope" in bad.stderr
    assert _keys(db_url, "revoke", "recipient-1").returncode == 0
    assert apikeys.verify(db, secret) is None
    assert _keys(db_url, "revoke", "recipient-1").returncode == 1
