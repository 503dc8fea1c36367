"""The store's one interface over TimescaleDB and plain PostgreSQL: writes, rollups, upkeep.

In: a psycopg connection to a migrated database (:mod:`citypulse.schema.migrations`) and the
settings.  Out: :class:`Store`, whose methods behave the same on both backends.  Use it
through :mod:`citypulse.schema` (``Store.open(conn, settings)``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from citypulse.catalogue import MAX_SLOTS
from citypulse.schema.migrations import BACKENDS, POSTGRES, TIMESCALE, current_backend, migrate
from citypulse.settings import Settings

log = logging.getLogger(__name__)

RAW_COLUMNS = ("time", "sensor", "seq") + tuple(f"v{i}" for i in range(MAX_SLOTS))
RAW_TYPES = ("timestamptz", "int4", "int8") + ("float8",) * MAX_SLOTS

# the advisory lock key of the store's upkeep owner (any stable 64-bit number)
UPKEEP_LOCK = 0x63697479_70756C73  # "citypuls"

# A reading row as written: (time, sensor id, seq or None, v0 .. v7 or None).
Row = tuple


def merge_rows(rows: Sequence[Row]) -> tuple[list[Row], int]:
    """Merge rows with the same (sensor, time): first value of each slot wins.

    Returns the unique rows and the number of metric values dropped as duplicates.
    """
    rows = rows if isinstance(rows, list) else list(rows)
    if len({(r[1], r[0]) for r in rows}) == len(rows):  # nothing to merge
        return rows, 0
    merged: dict[tuple, Row] = {}
    dups = 0
    for r in rows:
        key = (r[1], r[0])
        cur = merged.setdefault(key, r)
        if cur is r:
            continue
        new = list(cur)
        for i in range(3, 3 + MAX_SLOTS):
            if r[i] is not None:
                if new[i] is None:
                    new[i] = r[i]
                else:
                    dups += 1
        if new[2] is None:
            new[2] = r[2]
        merged[key] = tuple(new)
    return list(merged.values()), dups


@dataclass(frozen=True)
class WriteResult:
    """What one write did: rows inserted, rows merged (new metrics at an existing key), duplicates."""

    inserted: int
    merged: int
    duplicates: int

    @property
    def stored(self) -> int:
        """Rows that added something to the store."""
        return self.inserted + self.merged


_COPY_RAW = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)")
# PostgreSQL's binary COPY framing: the header (signature, flags, extension length), trailer
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
COPY_TRAILER = b"\xff\xff"
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
                    gateways: Mapping[str, tuple[datetime, int]] | None = None,
                    encoded: tuple[bytes, int] = (b"", 0)) -> WriteResult:
        """Write what one ingest batch carries, in one transaction.

        ``rows`` as :meth:`write_rows`; ``encoded`` (data, n): the first n of ``rows``
        already in binary COPY row format (:data:`RAW_COLUMNS` as :data:`RAW_TYPES`, no
        header), sent as they are; ``dead`` dead letters as tuples in
        :data:`DEAD_COLUMNS` order; ``status`` (sensor id, ``online``/``offline``, time)
        upserted when changed; ``gateways`` heartbeats as :meth:`touch_gateways`.  Raises
        psycopg errors (nothing is written then); the caller tells temporary from permanent.
        """
        # the COPY goes first and without a savepoint of its own: when the unique key stops
        # it, the whole transaction is redone with the merge (the rare path), so the usual
        # batch costs no SAVEPOINT/RELEASE round trips
        try:
            return self._batch(conn, rows, dead, status, gateways, merge=False, encoded=encoded)
        except psycopg.errors.UniqueViolation:
            return self._batch(conn, rows, dead, status, gateways, merge=True)

    def write_rows(self, conn: psycopg.Connection, rows: Sequence[Row]) -> WriteResult:
        """Write reading rows in one transaction; a (sensor, time, metric) seen before is dropped.

        Fast path: binary COPY straight into the table.  When the batch collides with rows
        already stored (a redelivery, also into a compressed chunk) or repeats a (sensor,
        time) itself, the unique key stops the COPY and the transaction is redone with the
        merge: :func:`merge_rows` folds the batch's own repeats (first value of each slot
        wins), then ``citypulse.merge_raw`` keeps the first value of each metric and adds
        metrics not stored yet.  So the usual batch pays no duplicate check in Python.  The
        result's ``duplicates`` counts rows not stored plus metric values the batch
        repeated; rows stored are ``inserted + merged``.  Raises psycopg errors; the caller
        tells temporary from permanent ones.
        """
        return self.write_batch(conn, rows) if rows else WriteResult(0, 0, 0)

    def _batch(self, conn: psycopg.Connection, rows: Sequence[Row], dead: Sequence[tuple],
               status: Sequence[tuple[str, str, datetime]],
               gateways: Mapping[str, tuple[datetime, int]] | None, merge: bool,
               encoded: tuple[bytes, int] = (b"", 0)) -> WriteResult:
        """:meth:`write_batch`'s one transaction, the rows by COPY or (``merge``) merged."""
        with conn.transaction(), conn.cursor() as cur:
            result = WriteResult(0, 0, 0)
            if rows:
                if merge:
                    result = self._merge(conn, rows)
                else:
                    self._copy(cur, sql.Identifier("citypulse", "raw"), rows, encoded)
                    result = WriteResult(len(rows), 0, 0)
                self._mark_dirty(conn, rows)
            if gateways:
                self.touch_gateways(conn, gateways)
            if dead:
                with cur.copy(_COPY_DEAD) as copy:
                    copy.set_types(_DEAD_TYPES)
                    for d in dead:
                        copy.write_row(d)
            if status:
                cur.executemany(_STATUS_UPSERT, list(status))
        return result

    @staticmethod
    def _copy(cur: psycopg.Cursor, table: sql.Composable, rows: Sequence[Row],
              encoded: tuple[bytes, int] = (b"", 0)) -> None:
        stmt = _COPY_RAW.format(table, sql.SQL(", ").join(map(sql.Identifier, RAW_COLUMNS)))
        data, n = encoded
        with cur.copy(stmt) as copy:
            copy.set_types(RAW_TYPES)
            if n:  # psycopg adds the trailer only after write_row: a whole block carries its own
                copy.write(COPY_HEADER)
                copy.write(data)
                if n == len(rows):
                    copy.write(COPY_TRAILER)
            for row in rows[n:] if n else rows:
                copy.write_row(row)

    @staticmethod
    def _merge(conn: psycopg.Connection, rows: Sequence[Row]) -> WriteResult:
        unique, repeated = merge_rows(rows)
        columns = [list(col) for col in zip(*unique, strict=True)]
        inserted, merged = conn.execute(_MERGE_RAW, columns).fetchone()
        return WriteResult(inserted, merged, len(unique) - inserted - merged + repeated)

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
