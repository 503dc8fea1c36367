"""``citypulse bench copycost``: the database's CPU per stored reading, table shape by shape (JSON).

A private PostgreSQL; the same readings (2 values each, like ``bench ingest``) are written by
binary COPY in batches of ``batch`` rows, one transaction each, into tables that add one of
the store's guarantees at a time:

- ``bare``: the bare pipeline's table (5 columns, one b-tree on (sensor, time));
- ``wide``: the store's 11-column row, same b-tree;
- ``unique``: 11 columns, the unique key (sensor, time) that finds duplicates;
- ``partitioned``: the unique key on daily range partitions (retention drops whole days);
- ``brin``: and the BRIN index on time raw has on plain PostgreSQL (time windows);
- ``store``: ``citypulse.raw`` itself, migrated as production (the same partitions, key and
  BRIN index; a hypertable on TimescaleDB), written by :meth:`Store.write_rows`, so with the
  rollups' dirty minutes.

Out: per table, the backend's CPU microseconds per row (``/proc``, utime + stime) of each
round, and the median; each round starts at the next table, so the machine's noise and
the checkpoints' full-page writes hit all alike.
"""

from __future__ import annotations

import statistics
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

from bench.proccpu import cpu
from citypulse import schema
from citypulse.catalogue import MAX_SLOTS
from citypulse.settings import Settings
from citypulse.stack import PrivatePostgres

WIDE = ("time timestamptz NOT NULL, sensor int4 NOT NULL, seq int8, "
        + ", ".join(f"v{i} float8" for i in range(MAX_SLOTS)))
TABLES = {
    "bare": ("CREATE TABLE {t} (time timestamptz NOT NULL, sensor int4 NOT NULL, seq int8, "
             "v0 float8, v1 float8); CREATE INDEX ON {t} (sensor, time)"),
    "wide": f"CREATE TABLE {{t}} ({WIDE}); CREATE INDEX ON {{t}} (sensor, time)",
    "unique": f"CREATE TABLE {{t}} ({WIDE}, UNIQUE (sensor, time))",
    "partitioned": f"CREATE TABLE {{t}} ({WIDE}, UNIQUE (sensor, time)) PARTITION BY RANGE (time)",
    "brin": (f"CREATE TABLE {{t}} ({WIDE}, UNIQUE (sensor, time)) PARTITION BY RANGE (time); "
             "CREATE INDEX ON {t} USING brin (time) WITH (pages_per_range = 16)"),
}


def _rows(n: int, round_no: int, start: datetime, width: int) -> list[tuple]:
    pad = (None,) * (width - 5)
    return [(start + timedelta(milliseconds=round_no * n + i), i % 2000 + 1,
             round_no * n + i, 7.0, 42.5) + pad for i in range(n)]


def _setup(conn: psycopg.Connection, day: datetime) -> None:
    for name, ddl in TABLES.items():
        for stmt in ddl.format(t=f"cc_{name}").split("; "):
            conn.execute(stmt)
    for parent in ("cc_partitioned", "cc_brin"):
        for d in range(-1, 2):
            lo = day + timedelta(days=d)
            conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})")
                         .format(sql.Identifier(f"{parent}_{d + 1}"), sql.Identifier(parent),
                                 lo, lo + timedelta(days=1)))


def _copy(conn: psycopg.Connection, table: str, rows: list[tuple], batch: int) -> None:
    width = len(rows[0])
    cols = ["time", "sensor", "seq"] + [f"v{i}" for i in range(width - 3)]
    types = ["timestamptz", "int4", "int8"] + ["float8"] * (width - 3)
    stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, cols)))
    for i in range(0, len(rows), batch):
        with conn.transaction(), conn.cursor() as cur, cur.copy(stmt) as cp:
            cp.set_types(types)
            for r in rows[i:i + batch]:
                cp.write_row(r)


def run(rows: int = 400_000, batch: int = 20_000, rounds: int = 4) -> dict:
    """The median backend CPU per row of each table (see the module docstring)."""
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = day + timedelta(hours=1)
    out: dict[str, list[float]] = {name: [] for name in (*TABLES, "store")}
    with tempfile.TemporaryDirectory(prefix="cp-copycost-") as tmp, \
            PrivatePostgres(Path(tmp) / "pg") as pg:
        settings = Settings(database_url=pg.url, data_dir=Path(tmp))
        with psycopg.connect(pg.url, autocommit=True) as conn:
            store = schema.Store.open(conn, settings)
            conn.execute("SET search_path = public")
            _setup(conn, day)
        for k in range(rounds):
            narrow, wide = _rows(rows, k, start, 5), _rows(rows, k, start, 3 + MAX_SLOTS)
            names = list(out)
            for name in names[k % len(names):] + names[:k % len(names)]:  # rotate: WAL and
                with psycopg.connect(pg.url) as conn:                     # checkpoints even out
                    pid = conn.info.backend_pid
                    c0 = cpu(pid)
                    if name == "store":
                        for i in range(0, rows, batch):
                            store.write_rows(conn, wide[i:i + batch])
                    else:
                        _copy(conn, f"cc_{name}", narrow if name == "bare" else wide, batch)
                    out[name].append(round((cpu(pid) - c0) / rows * 1e6, 3))
    med = {name: round(statistics.median(v), 3) for name, v in out.items()}
    return {"rows_per_round": rows, "batch": batch, "backend": store.backend,
            "us_per_row": out, "median_us_per_row": med,
            # CPU comes in clock ticks (10 ms): a run too small to register has no ratio
            "ratio_to_bare": {n: round(v / med["bare"], 2) if med["bare"] else None
                              for n, v in med.items()}}
