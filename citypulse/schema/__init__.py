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

Modules: :mod:`citypulse.schema.migrations` (planning and applying the SQL files, the
backend check) and :mod:`citypulse.schema.store` (the :class:`Store`); import both
through this package.
"""

from citypulse.schema.migrations import (
    BACKENDS,
    POSTGRES,
    TIMESCALE,
    Step,
    connect,
    current_backend,
    detect_backend,
    migrate,
    plan,
    split_statements,
    sync_catalogue,
)
from citypulse.schema.store import (
    DEAD_COLUMNS,
    RAW_COLUMNS,
    RAW_TYPES,
    UPKEEP_LOCK,
    Row,
    Store,
    WriteResult,
    merge_rows,
)

__all__ = [
    "BACKENDS", "DEAD_COLUMNS", "POSTGRES", "RAW_COLUMNS", "RAW_TYPES", "TIMESCALE",
    "UPKEEP_LOCK", "Row", "Step", "Store", "WriteResult", "connect", "current_backend",
    "detect_backend", "merge_rows", "migrate", "plan", "split_statements", "sync_catalogue",
]
