"""Migrations: the SQL files of ``sql/`` planned per backend and applied once each.

In: a psycopg connection (autocommit) and the settings.  Out: a migrated database whose
``citypulse.schema_migrations`` lists every applied step and whose
``citypulse.metric_catalogue`` equals :mod:`citypulse.catalogue`.  Files are
``sql/NNN_name[.postgres|.timescale].sql``; the common file of a version runs before its
backend variant.  Use it through :mod:`citypulse.schema` (``migrate``, ``plan``,
``detect_backend``, ``current_backend``).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources

import psycopg

from citypulse.catalogue import metric_rows
from citypulse.settings import ConfigError, Settings

log = logging.getLogger(__name__)

TIMESCALE = "timescale"
POSTGRES = "postgres"
BACKENDS = (TIMESCALE, POSTGRES)

_FILE_RE = re.compile(r"^(\d{3})_([a-z0-9_]+?)(?:\.(postgres|timescale))?\.sql$")


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
