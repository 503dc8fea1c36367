"""Least privilege in the database (migration 040_roles), checked on a real PostgreSQL.

Login roles are made members of the group roles the migration creates, then each does
what its service does (and is refused what it must not do).
"""

from __future__ import annotations

import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from citypulse import schema
from citypulse.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
GROUPS = ("citypulse_migrator", "citypulse_collector", "citypulse_worker", "citypulse_dashboard")


def login_as(db_url: str, admin: psycopg.Connection, group: str) -> str:
    """Create a login role in ``group`` (trust auth here) and return a URL using it."""
    name = f"{group.split('_')[1][:4]}_{uuid.uuid4().hex[:8]}"
    admin.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(
        sql.Identifier(name), sql.Identifier(group)))
    return db_url.replace("//postgres@", f"//{name}@")


@pytest.fixture
def sensor_id(db) -> int:
    return db.execute("INSERT INTO citypulse.sensors (sensor_id, kind, lon, lat) "
                      "VALUES ('s1', 'air', 121.93, 30.9) RETURNING id").fetchone()[0]


def rows_for(sensor: int, n: int = 50) -> list[tuple]:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    return [(t0 + timedelta(seconds=i), sensor, i, float(i), None, None, None, None, None,
             None, None) for i in range(n)]


def test_group_roles_exist_nologin_and_migration_is_idempotent(db, db_url):
    got = dict(db.execute("SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = ANY(%s)",
                          (list(GROUPS),)).fetchall())
    assert got == dict.fromkeys(GROUPS, False)
    assert schema.migrate(db, Settings(database_url=db_url)) == []


def test_collector_copies_readings_but_cannot_delete_or_read_alerts(db, db_url, sensor_id):
    url = login_as(db_url, db, "citypulse_collector")
    settings = Settings(database_url=url)
    with psycopg.connect(url, autocommit=True) as conn:
        store = schema.Store.open(conn, settings, migrate_now=False)  # runs upkeep, too
        rows = rows_for(sensor_id)
        assert store.write_rows(conn, rows).inserted == 50
        # redelivery: the merge path (temp staging table, upsert) works under this role
        again = store.write_rows(conn, rows[:10])
        assert again.duplicates == 10 and again.inserted == 0
        conn.execute("INSERT INTO citypulse.dead_letters (received_at, topic, reason, payload) "
                     "VALUES (now(), 't', 'malformed', '\\x00')")
        conn.execute("INSERT INTO citypulse.sensor_status (sensor_id, status, changed_at) "
                      "VALUES ('s1', 'online', now()) ON CONFLICT (sensor_id) DO UPDATE "
                      "SET status = EXCLUDED.status")
        assert conn.execute("SELECT count(*) FROM citypulse.sensors").fetchone()[0] == 1
        seen = datetime.now(UTC)
        store.touch_gateways(conn, {"gw-1": (seen, 3)})
        store.touch_gateways(conn, {"gw-1": (seen, 2)})  # again: an update
        assert conn.execute("SELECT messages FROM citypulse.gateway_seen").fetchone()[0] == 5
        for stmt in ("DELETE FROM citypulse.raw",
                     "DELETE FROM citypulse.gateway_seen",
                     "DELETE FROM citypulse.dead_letters",
                     "SELECT count(*) FROM citypulse.alerts",
                     "UPDATE citypulse.raw SET seq = 0",
                     "INSERT INTO citypulse.sensors (sensor_id, kind, lon, lat) "
                     "VALUES ('rogue', 'air', 0, 0)",
                     "TRUNCATE citypulse.raw",
                     "DROP TABLE citypulse.dead_letters",
                     "CREATE TABLE citypulse.x (a int)"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(stmt)
    assert db.execute("SELECT count(*) FROM citypulse.raw").fetchone()[0] == 50


def test_dashboard_reads_and_updates_alerts_but_cannot_write_readings(db, db_url, sensor_id):
    with psycopg.connect(db_url, autocommit=True) as admin:
        schema.Store.open(admin, Settings(database_url=db_url),
                          migrate_now=False).write_rows(admin, rows_for(sensor_id, 5))
    url = login_as(db_url, db, "citypulse_dashboard")
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM citypulse.readings").fetchone()[0] == 5
        conn.execute("SELECT count(*) FROM citypulse.dead_letters")
        conn.execute("UPDATE citypulse.alerts SET status = status WHERE false")
        conn.execute("SELECT id FROM citypulse.alerts WHERE false FOR UPDATE")
        for stmt in ("INSERT INTO citypulse.raw (time, sensor, v0) VALUES (now(), %s, 1)",
                     "COPY citypulse.raw (time, sensor) FROM STDIN",
                     "DELETE FROM citypulse.alerts",
                     "UPDATE citypulse.sensors SET lon = 0 WHERE id = %s",
                     "DELETE FROM citypulse.raw WHERE sensor = %s"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(stmt, (sensor_id,) if "%s" in stmt else None)
    assert db.execute("SELECT count(*) FROM citypulse.raw").fetchone()[0] == 5


def test_worker_writes_derived_tables_not_readings(db, db_url, sensor_id):
    url = login_as(db_url, db, "citypulse_worker")
    with psycopg.connect(url, autocommit=True) as conn:
        store = schema.Store.open(conn, Settings(database_url=url), migrate_now=False)
        assert isinstance(store.maintain(conn), dict)  # partitions and rollups as the worker
        conn.execute("DELETE FROM citypulse.twin_watermark")
        conn.execute("DELETE FROM citypulse.alert_deliveries")
        conn.execute("SELECT count(*) FROM citypulse.sensor_status")
        conn.execute("SELECT count(*) FROM citypulse.gateway_seen")
        for stmt in ("INSERT INTO citypulse.raw (time, sensor, v0) VALUES (now(), %s, 1)",
                     "UPDATE citypulse.gateway_seen SET last_seen = now()",
                     "DELETE FROM citypulse.dead_letters",
                     "UPDATE citypulse.sensors SET lon = 0 WHERE id = %s"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(stmt, (sensor_id,) if "%s" in stmt else None)


def test_tables_added_later_are_readable_by_default(db, db_url):
    db.execute("CREATE TABLE citypulse.later_table (a int)")
    db.execute("INSERT INTO citypulse.later_table VALUES (1)")
    url = login_as(db_url, db, "citypulse_dashboard")
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT a FROM citypulse.later_table").fetchone() == (1,)
    url = login_as(db_url, db, "citypulse_collector")
    with psycopg.connect(url, autocommit=True) as conn, pytest.raises(
            psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT a FROM citypulse.later_table")


def test_services_may_open_the_store_with_migrate_when_nothing_is_pending(db, db_url,
                                                                         store_backend):
    """Collectors and workers call Store.open(); with the schema current that needs no DDL."""
    for group in ("citypulse_collector", "citypulse_worker"):
        url = login_as(db_url, db, group)
        with psycopg.connect(url, autocommit=True) as conn:
            assert schema.Store.open(conn, Settings(database_url=url)).backend == store_backend


def test_compose_initdb_script_then_migrate_as_owner_not_superuser(pg_own, tmp_path):
    """deploy/postgres/initdb/50-citypulse-roles.sh on a fresh cluster, then the whole
    migration as the owner login (no superuser), then the collector login writes."""
    script = (ROOT / "deploy/postgres/initdb/50-citypulse-roles.sh").read_text()
    if not pg_own.timescale:
        script = script.replace("CREATE EXTENSION IF NOT EXISTS timescaledb;\n", "")
    (tmp_path / "init.sh").write_text(script)
    env = {"PATH": f"{pg_own.bindir}:/usr/bin:/bin", "PGHOST": "127.0.0.1",
           "PGPORT": str(pg_own.port), "POSTGRES_USER": "postgres",
           "DB_OWNER_PASSWORD": "o-pw", "DB_COLLECTOR_PASSWORD": "c-pw",
           "DB_WORKER_PASSWORD": "w-pw", "DB_DASHBOARD_PASSWORD": "d-pw"}
    r = subprocess.run(["bash", str(tmp_path / "init.sh")], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    base = pg_own.url.rsplit("@", 1)[1]
    owner = f"postgresql://citypulse_owner@{base}"
    with psycopg.connect(owner, autocommit=True) as conn:
        assert not conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
                                ).fetchone()[0]
        schema.migrate(conn, Settings(database_url=owner))
        sid = conn.execute("INSERT INTO citypulse.sensors (sensor_id, kind, lon, lat) "
                           "VALUES ('s1', 'air', 121.93, 30.9) RETURNING id").fetchone()[0]
    collector = f"postgresql://citypulse_collector_login@{base}"
    with psycopg.connect(collector, autocommit=True) as conn:
        store = schema.Store.open(conn, Settings(database_url=collector))
        assert store.write_rows(conn, rows_for(sid, 20)).inserted == 20
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM citypulse.raw")


def test_alert_lifecycle_under_service_roles(db, db_url):
    """The alerts worker opens alerts; the dashboard acknowledges and resolves them."""
    lifecycle = pytest.importorskip("analytics.lifecycle")
    worker = login_as(db_url, db, "citypulse_worker")
    dash = login_as(db_url, db, "citypulse_dashboard")
    new = lifecycle.NewAlert(rule="fire", entity_kind="sensor", entity_id="s1",
                             severity="critical", title="<script>alert(1)</script>",
                             started_at=datetime.now(UTC), evidence={"v": 1})
    with psycopg.connect(worker, autocommit=True) as conn:
        alert = lifecycle.open_alert(conn, new)
        assert alert is not None
    with psycopg.connect(dash, autocommit=True) as conn:
        assert lifecycle.acknowledge(conn, alert.id, by="duty-officer").status == "acknowledged"
        assert lifecycle.resolve(conn, alert.id, by="duty-officer").status == "resolved"
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            lifecycle.open_alert(conn, new)  # dashboards do not invent alerts
    collector = login_as(db_url, db, "citypulse_collector")
    with psycopg.connect(collector, autocommit=True) as conn, pytest.raises(
            psycopg.errors.InsufficientPrivilege):
        lifecycle.list_alerts(conn)


def test_migrating_without_createrole_names_the_fix(pg_own):
    """Group roles missing and a migrator that may not create them: a clear error."""
    admin_url = pg_own.url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute("CREATE ROLE plain_owner LOGIN")
        admin.execute("CREATE DATABASE plain OWNER plain_owner")
    url = f"postgresql://plain_owner@{pg_own.url.rsplit('@', 1)[1].rsplit('/', 1)[0]}/plain"
    with psycopg.connect(url, autocommit=True) as conn, pytest.raises(
            psycopg.errors.RaiseException, match="may not create roles"):
        schema.migrate(conn, Settings(database_url=url))
