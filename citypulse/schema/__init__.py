"""The store: schema, migrations and the one interface over TimescaleDB and plain PostgreSQL.

In: a psycopg 3 connection and the settings.  Out: a migrated database and a
:class:`Store` whose methods behave the same on both backends::

    with connect(settings) as conn:
        store = Store.open(conn, settings)          # detects the backend, migrates
        store.write_batch(conn, rows, dead, status, gateways)  # one transaction
        store.write_rows(conn, rows)                # COPY raw readings, duplicates dropped
        store.maintain(conn)                        # partitions, retention, rollups

Backends: ``timescale`` when the timescaledb extension is available (hypertable,
continuous aggregate, compression and retention policies), else ``postgres`` (daily
range partitions created ahead, rollups maintained by citypulse, retention by dropping
partitions).  The SQL lives in ``sql/NNN_name[.backend].sql``; version numbers are
reserved by stage: 001-009 core/ingest, 010-019 twin, 020-029 analytics,
030-039 dashboards, 040-049 production.

Storage: one row per reading in ``citypulse.raw(time, sensor, seq, v0..v7)``, where
``sensor`` is ``citypulse.sensors.id`` and slot ``vN`` is the N-th metric of the sensor's
kind in :mod:`citypulse.catalogue`.  The documented interface for people is the view
``citypulse.readings(time, sensor_id, kind, metric, value)``.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from citypulse.catalogue import MAX_SLOTS, metric_rows
from citypulse.settings import ConfigError, Settings

log = logging.getLogger(__name__)

TIMESCALE = "timescale"
POSTGRES = "postgres"
BACKENDS = (TIMESCALE, POSTGRES)

RAW_COLUMNS = ("time", "sensor", "seq") + tuple(f"v{i}" for i in range(MAX_SLOTS))
RAW_TYPES = ("timestamptz", "int4", "int8") + ("float8",) * MAX_SLOTS

_FILE_RE = re.compile(r"^(\d{3})_([a-z0-9_]+?)(?:\.(postgres|timescale))?\.sql$")

# the advisory lock key of the store's upkeep owner (any stable 64-bit number)
UPKEEP_LOCK = 0x63697479_70756C73  # "citypuls"

# A reading row as written: (time, sensor id, seq or None, v0 .. v7 or None).
Row = tuple


@dataclass(frozen=True)
class Step:
    """One migration file to apply: its version, name, backend ('' = common), statements."""

    version: int
    name: str
    backend: str
    statements: tuple[str, ...]

    @property
    def transactional(self) -> bool:
        """Timescale steps run statement by statement in autocommit; others in one transaction."""
        return self.backend != TIMESCALE


def split_statements(text: str) -> list[str]:
    """Split SQL text on ``;`` at line ends, keeping ``$$ ... $$`` bodies whole."""
    out: list[str] = []
    cur: list[str] = []
    in_body = False
    for line in text.splitlines():
        stripped = line.strip()
        if not cur and (not stripped or stripped.startswith("--")):
            continue
        cur.append(line)
        if line.count("$$") % 2 == 1:
            in_body = not in_body
        if not in_body and stripped.endswith(";"):
            out.append("\n".join(cur).strip())
            cur = []
    if "".join(cur).strip():
        out.append("\n".join(cur).strip())
    return out


def _sql_files() -> list[tuple[int, str, str, str]]:
    files = []
    for entry in resources.files("citypulse.schema").joinpath("sql").iterdir():
        m = _FILE_RE.match(entry.name)
        if m:
            files.append((int(m.group(1)), m.group(2), m.group(3) or "", entry.read_text()))
    return sorted(files, key=lambda f: (f[0], f[2] != ""))


def plan(backend: str, applied: Iterable[int] = ()) -> list[Step]:
    """The migration steps for ``backend`` not yet in ``applied``, in order."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown store backend {backend!r}; use one of {BACKENDS}")
    done = set(applied)
    return [
        Step(v, name, be, tuple(split_statements(text)))
        for v, name, be, text in _sql_files()
        if v not in done and be in ("", backend)
    ]


def connect(settings: Settings, **kwargs) -> psycopg.Connection:
    """Open a connection to the configured database (opened only when a component starts)."""
    return psycopg.connect(settings.database_url, **kwargs)


def detect_backend(conn: psycopg.Connection, wanted: str = "auto") -> str:
    """The store backend to migrate for: ``timescale`` or ``postgres``.

    ``auto`` takes TimescaleDB when the extension is installed and preloaded; installed but
    not in ``shared_preload_libraries`` it warns once, saying how to enable it, and takes
    plain PostgreSQL.  ``timescale`` raises :class:`ConfigError` when it cannot be used.
    """
    if wanted == POSTGRES:
        return POSTGRES
    available = conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    # shared_preload_libraries is superuser-only; a preloaded library's own settings are not
    # (unloaded, a name in postgresql.conf is only an untyped placeholder)
    preloaded = conn.execute(
        "SELECT 1 FROM pg_settings WHERE name = 'timescaledb.max_background_workers' "
        "AND vartype = 'integer'").fetchone() is not None
    if available and preloaded:
        return TIMESCALE
    if available:
        problem = ("the timescaledb extension is installed but not preloaded: add "
                   "shared_preload_libraries = 'timescaledb' to postgresql.conf and restart "
                   "the server")
    else:
        problem = "the timescaledb extension is not installed on this server"
    if wanted == TIMESCALE:
        raise ConfigError(f"CITYPULSE_STORE_BACKEND=timescale, but {problem}; or set "
                          "CITYPULSE_STORE_BACKEND=postgres (or auto)")
    if available:
        log.warning("%s; using plain PostgreSQL (CITYPULSE_STORE_BACKEND=postgres silences "
                    "this)", problem)
    return POSTGRES


def _ensure_migrations_table(conn: psycopg.Connection) -> None:
    if conn.execute("SELECT to_regclass('citypulse.schema_migrations')").fetchone()[0]:
        return  # exists: a service role without CREATE (040_roles) may still call migrate
    conn.execute("CREATE SCHEMA IF NOT EXISTS citypulse")
    conn.execute(
        """CREATE TABLE IF NOT EXISTS citypulse.schema_migrations (
               version integer NOT NULL, name text NOT NULL, backend text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (version, backend))"""
    )


def migrate(conn: psycopg.Connection, settings: Settings, backend: str | None = None,
            dry_run: bool = False) -> list[str]:
    """Apply pending migrations; return the statements issued (or that would be, if dry_run).

    Idempotent: a second call issues nothing.  ``conn`` must be in autocommit mode.
    """
    params = {
        "raw_retention": timedelta(days=settings.raw_retention_days),
        "rollup_retention": timedelta(days=settings.rollup_retention_days),
    }
    applied_steps: set[tuple[int, str]] = set()
    if not dry_run:
        conn.autocommit = True
        _ensure_migrations_table(conn)
        applied_steps = {
            (v, b) for v, b in conn.execute(
                "SELECT version, backend FROM citypulse.schema_migrations").fetchall()
        }
        prev = {b for _, b in applied_steps if b}
        backend = backend or detect_backend(conn, settings.store_backend)
        if prev and backend not in prev:
            raise RuntimeError(f"database was migrated for {prev.pop()}, not {backend}")
    backend = backend or POSTGRES
    issued: list[str] = []
    for step in plan(backend):
        if (step.version, step.backend) in applied_steps:
            continue
        issued.extend(step.statements)
        if dry_run:
            continue
        log.info("migrating %03d_%s (%s)", step.version, step.name, step.backend or "common")
        if step.backend == TIMESCALE:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        with conn.transaction() if step.transactional else contextlib.nullcontext():
            for stmt in step.statements:
                conn.execute(stmt, params if "%(" in stmt else None)
            conn.execute(
                "INSERT INTO citypulse.schema_migrations (version, name, backend) "
                "VALUES (%s, %s, %s)", (step.version, step.name, step.backend))
    if not dry_run:
        sync_catalogue(conn)
    return issued


def sync_catalogue(conn: psycopg.Connection) -> None:
    """Make ``citypulse.metric_catalogue`` equal the Python catalogue."""
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO citypulse.metric_catalogue
                   (kind, slot, metric, unit, min_value, max_value, description)
               VALUES (%s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (kind, slot) DO UPDATE SET metric = EXCLUDED.metric,
                   unit = EXCLUDED.unit, min_value = EXCLUDED.min_value,
                   max_value = EXCLUDED.max_value, description = EXCLUDED.description""",
            metric_rows(),
        )


def current_backend(conn: psycopg.Connection) -> str:
    """The backend the database was migrated for."""
    row = conn.execute(
        "SELECT backend FROM citypulse.schema_migrations WHERE backend <> '' LIMIT 1"
    ).fetchone()
    if row is None:
        raise RuntimeError("database not migrated: run `citypulse db migrate`")
    return row[0]


@dataclass(frozen=True)
class WriteResult:
    """What one write did: rows inserted, rows merged (new metrics at an existing key), duplicates."""

    inserted: int
    merged: int
    duplicates: int


_COPY_RAW = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)")
_GATEWAY_SEEN = """
INSERT INTO citypulse.gateway_seen AS g (gateway_id, last_seen, messages)
SELECT * FROM unnest(%s::text[], %s::timestamptz[], %s::int8[])
ON CONFLICT (gateway_id) DO UPDATE
SET last_seen = greatest(g.last_seen, EXCLUDED.last_seen), messages = g.messages + EXCLUDED.messages
"""
_MERGE_RAW = sql.SQL(
    "SELECT inserted, merged FROM citypulse.merge_raw(%s::timestamptz[], %s::int4[], "
    "%s::int8[], {})").format(sql.SQL(", ").join([sql.SQL("%s::float8[]")] * MAX_SLOTS))
# citypulse.dead_letters in column order (a dead letter as written is a tuple in this order)
DEAD_COLUMNS = ("received_at", "topic", "reason", "payload", "detail", "sensor_id")
_DEAD_TYPES = ("timestamptz", "text", "text", "bytea", "text", "text")
_COPY_DEAD = sql.SQL("COPY citypulse.dead_letters ({}) FROM STDIN (FORMAT BINARY)").format(
    sql.SQL(", ").join(map(sql.Identifier, DEAD_COLUMNS)))
_STATUS_UPSERT = """
INSERT INTO citypulse.sensor_status (sensor_id, status, changed_at) VALUES (%s, %s, %s)
ON CONFLICT (sensor_id) DO UPDATE SET status = EXCLUDED.status, changed_at = EXCLUDED.changed_at
WHERE citypulse.sensor_status.status IS DISTINCT FROM EXCLUDED.status
"""


class Store:
    """The store's one interface; backend differences stay inside."""

    def __init__(self, backend: str, settings: Settings) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown store backend {backend!r}")
        self.backend = backend
        self.settings = settings
        self._refresher: bool | None = None  # timescale: may refresh the continuous aggregate

    @classmethod
    def open(cls, conn: psycopg.Connection, settings: Settings, migrate_now: bool = True) -> Store:
        """Migrate (unless told not to), then return the store for the database's backend."""
        if migrate_now:
            migrate(conn, settings)
        store = cls(current_backend(conn), settings)
        store.maintain(conn)
        return store

    # --- writing -------------------------------------------------------------------------
    def write_batch(self, conn: psycopg.Connection, rows: Sequence[Row] = (),
                    dead: Sequence[tuple] = (),
                    status: Sequence[tuple[str, str, datetime]] = (),
                    gateways: Mapping[str, tuple[datetime, int]] | None = None) -> WriteResult:
        """Write what one ingest batch carries, in one transaction.

        ``rows`` as :meth:`write_rows`; ``dead`` dead letters as tuples in
        :data:`DEAD_COLUMNS` order; ``status`` (sensor id, ``online``/``offline``, time)
        upserted when changed; ``gateways`` heartbeats as :meth:`touch_gateways`.  Raises
        psycopg errors (nothing is written then); the caller tells temporary from permanent.
        """
        with conn.transaction():
            result = self._write_rows(conn, rows)
            if gateways:
                self.touch_gateways(conn, gateways)
            with conn.cursor() as cur:
                if dead:
                    with cur.copy(_COPY_DEAD) as copy:
                        copy.set_types(_DEAD_TYPES)
                        for d in dead:
                            copy.write_row(d)
                if status:
                    cur.executemany(_STATUS_UPSERT, list(status))
        return result

    def write_rows(self, conn: psycopg.Connection, rows: Sequence[Row]) -> WriteResult:
        """Write reading rows in one transaction; a (sensor, time, metric) seen before is dropped.

        Fast path: binary COPY straight into the table.  When the batch collides with rows
        already stored (a redelivery, also into a compressed chunk), it falls back to
        ``citypulse.merge_raw``, which keeps the first value of each metric and adds metrics
        not stored yet.
        Rows must be unique by (sensor, time) within the batch.  Raises psycopg errors;
        the caller tells temporary from permanent ones.
        """
        if not rows:
            return WriteResult(0, 0, 0)
        with conn.transaction():
            return self._write_rows(conn, rows)

    def _write_rows(self, conn: psycopg.Connection, rows: Sequence[Row]) -> WriteResult:
        """:meth:`write_rows` inside the caller's transaction (one savepoint, for the COPY)."""
        if not rows:
            return WriteResult(0, 0, 0)
        try:
            with conn.transaction(), conn.cursor() as cur:
                self._copy(cur, sql.Identifier("citypulse", "raw"), rows)
            result = WriteResult(len(rows), 0, 0)
        except psycopg.errors.UniqueViolation:
            result = self._merge(conn, rows)
        self._mark_dirty(conn, rows)
        return result

    @staticmethod
    def _copy(cur: psycopg.Cursor, table: sql.Composable, rows: Sequence[Row]) -> None:
        stmt = _COPY_RAW.format(table, sql.SQL(", ").join(map(sql.Identifier, RAW_COLUMNS)))
        with cur.copy(stmt) as copy:
            copy.set_types(RAW_TYPES)
            for row in rows:
                copy.write_row(row)

    @staticmethod
    def _merge(conn: psycopg.Connection, rows: Sequence[Row]) -> WriteResult:
        columns = [list(col) for col in zip(*rows, strict=True)]
        inserted, merged = conn.execute(_MERGE_RAW, columns).fetchone()
        return WriteResult(inserted, merged, len(rows) - inserted - merged)

    @staticmethod
    def _mark_dirty(conn: psycopg.Connection, rows: Sequence[Row]) -> None:
        minutes = {t.replace(second=0, microsecond=0) for t in {r[0] for r in rows}}
        conn.execute("INSERT INTO citypulse.rollup_dirty (bucket) "
                     "SELECT unnest(%s::timestamptz[]) ON CONFLICT DO NOTHING", (sorted(minutes),))

    @staticmethod
    def touch_gateways(conn: psycopg.Connection, seen: Mapping[str, tuple[datetime, int]]
                       ) -> None:
        """Record gateway heartbeats: gateway id -> (latest receive time, messages).

        In gateway-id order, so that collectors sharing a subscription never deadlock.
        """
        if not seen:
            return
        ids = sorted(seen)
        conn.execute(_GATEWAY_SEEN, (ids, [seen[g][0] for g in ids], [seen[g][1] for g in ids]))

    # --- upkeep ----------------------------------------------------------------------------
    @staticmethod
    def claim_upkeep(conn: psycopg.Connection) -> bool:
        """Try to become the one process that runs :meth:`maintain` (replicas share a store).

        A session advisory lock: held while ``conn`` stays open, so when the owner exits
        another replica's next claim succeeds.  True when this connection holds it.
        """
        return bool(conn.execute("SELECT pg_try_advisory_lock(%s)", (UPKEEP_LOCK,)).fetchone()[0])

    def oldest_allowed(self, now: datetime | None = None) -> datetime:
        """Readings older than this are outside retention (dead-lettered, not stored)."""
        now = now or datetime.now(UTC)
        return now - timedelta(days=self.settings.raw_retention_days)

    def maintain(self, conn: psycopg.Connection, now: datetime | None = None,
                 settle_s: float = 5.0) -> dict:
        """Periodic upkeep; returns what it did, with the same keys on both backends.

        ``partitions_created``: daily partitions made ahead (postgres; TimescaleDB makes its
        chunks on insert, so 0 there); ``partitions_dropped``: partitions or chunks past
        retention dropped; ``rollups_expired``: rollup rows (postgres) or rollup chunks
        (timescale) past rollup retention removed; plus :meth:`refresh_rollups`'s keys.
        TimescaleDB's own retention policies remain as a safety net.
        """
        now = now or datetime.now(UTC)
        s = self.settings
        rollup_cutoff = now - timedelta(days=s.rollup_retention_days)
        with conn.transaction():
            if self.backend == TIMESCALE:
                made = 0
                dropped = conn.execute("SELECT citypulse.drop_raw_chunks_before(%s)",
                                       (self.oldest_allowed(now),)).fetchone()[0]
                expired = conn.execute("SELECT citypulse.drop_rollup_chunks_before(%s)",
                                       (rollup_cutoff,)).fetchone()[0]
                # minutes no owner session refreshed are the policy's (its 3-hour window)
                conn.execute("DELETE FROM citypulse.rollup_dirty WHERE bucket < %s",
                             (now - timedelta(hours=3),))
            else:
                first = (now - timedelta(days=s.raw_retention_days)).date()
                last = (now + timedelta(days=s.partitions_ahead_days)).date()
                made = conn.execute("SELECT citypulse.ensure_raw_partitions(%s, %s)",
                                    (first, last)).fetchone()[0]
                dropped = conn.execute("SELECT citypulse.drop_raw_partitions_before(%s)",
                                       (self.oldest_allowed(now),)).fetchone()[0]
                expired = conn.execute("DELETE FROM citypulse.rollup_1m WHERE bucket < %s",
                                       (rollup_cutoff,)).rowcount
        return {"partitions_created": made, "partitions_dropped": dropped,
                "rollups_expired": expired, **self.refresh_rollups(conn, settle_s)}

    def refresh_rollups(self, conn: psycopg.Connection, settle_s: float = 5.0) -> dict:
        """Roll up every minute written to that ended ``settle_s`` ago; ``minutes_rolled_up``.

        postgres: ``citypulse.refresh_dirty_rollups`` recomputes each dirty minute.
        timescale: the continuous aggregate is refreshed over the dirty minutes (runs of
        them), which needs an autocommit connection of the aggregate's owner (the migrator
        or a superuser); service roles refresh nothing (0): the aggregate's policy does it
        every 30 s and real-time aggregation shows the newest minutes meanwhile.
        """
        settle = timedelta(seconds=settle_s)
        if self.backend == POSTGRES:
            with conn.transaction():
                n = conn.execute("SELECT citypulse.refresh_dirty_rollups(%s)",
                                 (settle,)).fetchone()[0]
            return {"minutes_rolled_up": n}
        if not self._may_refresh(conn):
            return {"minutes_rolled_up": 0}
        minutes = sorted(b for (b,) in conn.execute(
            "DELETE FROM citypulse.rollup_dirty WHERE bucket + interval '1 minute' <= now() - %s "
            "RETURNING bucket", (settle,)))
        for lo, hi in _minute_runs(minutes):
            conn.execute("CALL refresh_continuous_aggregate('citypulse.rollup_1m', %s, %s)",
                         (lo, hi))
        return {"minutes_rolled_up": len(minutes)}

    def refresh_window(self, conn: psycopg.Connection, lo: datetime, hi: datetime) -> None:
        """Roll up every minute in [lo, hi) now, whatever was marked dirty (bulk loads).

        timescale: needs the same rights as :meth:`refresh_rollups`'s explicit refresh.
        """
        if self.backend == POSTGRES:
            conn.execute("SELECT citypulse.refresh_rollup_1m(%s, %s)", (lo, hi))
        else:
            conn.execute("CALL refresh_continuous_aggregate('citypulse.rollup_1m', %s, %s)",
                         (lo, hi))

    def _may_refresh(self, conn: psycopg.Connection) -> bool:
        if not conn.autocommit or conn.info.transaction_status != TransactionStatus.IDLE:
            return False  # a continuous aggregate refresh cannot run in a transaction block
        if self._refresher is None:
            self._refresher = conn.execute(
                "SELECT pg_has_role(current_user, c.relowner, 'USAGE') FROM pg_class c "
                "WHERE c.oid = 'citypulse.rollup_1m'::regclass").fetchone()[0]
            if not self._refresher:
                log.info("%s does not own citypulse.rollup_1m: its refresh is left to the "
                         "continuous aggregate policy", conn.info.user)
        return self._refresher


def _minute_runs(minutes: Sequence[datetime]) -> list[tuple[datetime, datetime]]:
    """Sorted minute starts as [lo, hi) runs of consecutive minutes."""
    runs: list[tuple[datetime, datetime]] = []
    for m in minutes:
        if runs and runs[-1][1] == m:
            runs[-1] = (runs[-1][0], m + timedelta(minutes=1))
        else:
            runs.append((m, m + timedelta(minutes=1)))
    return runs
