"""The collector's writer: a batch -> the store in one transaction, or the spool; then ack.

In: batches from :class:`~ingest.batcher.Batcher`, a connection factory, the spool.  Out:
committed rows, dead letters, status and heartbeats (one :meth:`Store.write_batch`), each
commit's rows then handed to ``announce`` when given (:mod:`ingest.announce`);
temporary database errors retried for 3 s, then the batch spooled (fsynced) and acked; a
batch the database rejects is bisected down to the bad rows, each dead-lettered.  Metrics
and per-sensor seq accounting (gaps and late fills) are updated after each commit.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg

from citypulse import schema
from citypulse.wire import payload as wp
from ingest.batcher import TEMPORARY, Batch
from ingest.metrics import Metrics
from ingest.sources.hub import SourceHub
from ingest.spool import Spool
from ingest.validate import dead_letter

log = logging.getLogger("citypulse.ingest")


class Writer:
    """Commits batches for every writer thread of one collector (thread-safe)."""

    def __init__(self, store: Callable[[], schema.Store], spool: Spool, metrics: Metrics,
                 connect_db: Callable[[], psycopg.Connection], db_down: threading.Event,
                 stopping: threading.Event,
                 announce: Callable[[psycopg.Connection, tuple, schema.WriteResult], None]
                 | None = None) -> None:
        self._store = store
        self.announce = announce  # after each commit: ingest.announce (CITYPULSE_STA_MQTT)
        self.spool = spool
        self.metrics = metrics
        self._connect_db = connect_db
        self._db_down = db_down
        self._stopping = stopping
        self._seq_lock = threading.Lock()
        self._low: dict[int, int] = {}   # per sensor: lowest and highest seq seen
        self._high: dict[int, int] = {}

    @property
    def store(self) -> schema.Store:
        """The store (opened by the collector's start)."""
        return self._store()

    def commit(self, batch: Batch, conn: psycopg.Connection | None) -> psycopg.Connection | None:
        """Commit (or spool) ``batch``; returns the connection to reuse.

        Blocks while the spool is full and the database down (the caller acks after this).
        """
        delay = 0.1
        give_up = time.monotonic() + 3.0
        while True:
            if not self._db_down.is_set() or self._stopping.is_set():
                try:
                    if conn is None or conn.closed:
                        conn = self._connect_db()
                    self.write(conn, batch)
                    return conn
                except TEMPORARY as exc:
                    self.metrics.db_errors.labels("temporary").inc()
                    log.warning("event=db_unavailable error=%r action=retry", str(exc).strip()[:200])
                    with contextlib.suppress(Exception):
                        conn.close()
                    conn = None
                    if time.monotonic() < give_up:
                        time.sleep(delay)
                        delay = min(delay * 2, 2.0)
                        continue
                    self._db_down.set()
            if self.spool.put(batch):
                self.metrics.spool_bytes.set(self.spool.bytes)
                log.info("event=spooled rows=%d dead_letters=%d", len(batch.rows), len(batch.dead))
                self.account(batch, spooled=True)
                return conn
            # spool full: hold the messages (no ack) until the database is back
            log.warning("event=spool_full bytes=%d action=hold_acks", self.spool.bytes)
            time.sleep(1.0)

    def write(self, conn: psycopg.Connection, batch: Batch, *, spooled: bool = False) -> None:
        """Commit a batch; permanent errors are isolated by bisecting the rows."""
        t0 = time.perf_counter()
        try:
            res = self._write_all(conn, batch.rows, batch)
        except TEMPORARY:
            raise
        except psycopg.DatabaseError as exc:
            self.metrics.db_errors.labels("permanent").inc()
            log.warning("event=batch_rejected error=%r action=bisect", str(exc).strip()[:200])
            self._write_all(conn, (), batch)
            if not spooled:
                self.account(Batch((), batch.dead, batch.status, batch.duplicates))
            self._bisect(conn, list(batch.rows), spooled)
            return
        if self.announce is not None:
            self.announce(conn, batch.rows, res)
        if spooled:  # seq and dead letters were counted when it was spooled
            self.metrics.stored.inc(res.stored)
            if res.duplicates:
                self.metrics.duplicates.inc(res.duplicates)
            return
        self.metrics.commit.observe(time.perf_counter() - t0)
        self.metrics.batch_rows.observe(len(batch.rows))
        self.account(batch, duplicates=res.duplicates, stored=res.stored)

    def _write_all(self, conn: psycopg.Connection, rows, batch: Batch) -> schema.WriteResult:
        encoded = batch.encoded if rows is batch.rows else (b"", 0)
        if not batch.side:
            return self.store.write_batch(conn, rows, [d.as_row() for d in batch.dead],
                                          batch.status, {g: (t, n) for g, t, n in batch.gateways},
                                          encoded)
        with conn.transaction():  # source side records (attributes, devices) in the same commit
            res = self.store.write_batch(conn, rows, [d.as_row() for d in batch.dead],
                                         batch.status, {g: (t, n) for g, t, n in batch.gateways},
                                         encoded)
            SourceHub.write_side(conn, batch.side)
        return res

    def _bisect(self, conn: psycopg.Connection, rows: list[tuple], spooled: bool) -> None:
        if not rows:
            return
        try:
            res = self.store.write_batch(conn, rows)
            if self.announce is not None:
                self.announce(conn, rows, res)
            if spooled:
                self.metrics.stored.inc(res.stored)
            else:
                self.account(Batch(tuple(rows), (), ()), duplicates=res.duplicates,
                             stored=res.stored)
            return
        except TEMPORARY:
            raise
        except psycopg.DatabaseError as exc:
            if len(rows) == 1:
                d = dead_letter(int(time.time() * 1000), "", wp.MALFORMED,
                                repr(rows[0]).encode(), f"database rejected row: {exc}"[:1000])
                self.store.write_batch(conn, dead=[d.as_row()])
                self.account(Batch((), (d,), ()))
                return
        mid = len(rows) // 2
        self._bisect(conn, rows[:mid], spooled)
        self._bisect(conn, rows[mid:], spooled)

    def drain_spool(self) -> None:
        """Commit every spooled batch, oldest first; clears ``db_down`` when empty."""
        with self._connect_db() as conn:
            for path in self.spool.files():
                self.write(conn, Spool.decode(path.read_bytes()), spooled=True)
                self.spool.remove(path)
                self.metrics.spool_bytes.set(self.spool.bytes)
            if not self.spool.files():
                if self._db_down.is_set():
                    log.info("event=spool_drained")
                self._db_down.clear()

    def account(self, batch: Batch, *, duplicates: int = 0, spooled: bool = False,
                stored: int | None = None) -> None:
        """Update metrics after a commit (or spool) of ``batch``.

        ``stored``: the rows the store took (default: all but ``duplicates``).
        """
        m = self.metrics
        for d in batch.dead:
            m.dead.labels(d.reason).inc()
        if duplicates or batch.duplicates:
            m.duplicates.inc(duplicates + batch.duplicates)
        if not batch.rows:
            return
        if not spooled:
            m.stored.inc(len(batch.rows) - duplicates if stored is None else stored)
            now = datetime.now(UTC)
            step = max(1, len(batch.rows) // 256)
            for r in batch.rows[::step]:
                m.lag.observe(max(0.0, (now - r[0]).total_seconds()))
            if batch.received_ms is not None:
                m.arrival.observe(max(0.0, now.timestamp() - batch.received_ms / 1000))
        with self._seq_lock:
            gaps, late = count_seq(self._low, self._high, batch.rows)
        if gaps:
            m.seq_gaps.inc(gaps)
        if late:
            m.seq_late.inc(late)


def count_seq(low: dict[int, int], high: dict[int, int], rows) -> tuple[int, int]:
    """Seq accounting of ``rows``: ``(gaps, late)``, updating per-sensor ``low``/``high``.

    A seq above the sensor's highest opens a gap of the seqs skipped; one below its lowest, a
    gap below; one in between fills a gap counted earlier (late).  Rows without seq count
    nothing.
    """
    gaps = late = 0
    for r in rows:
        seq = r[2]
        if seq is None:
            continue
        sensor = r[1]
        hi = high.get(sensor)
        if hi is None:
            low[sensor] = high[sensor] = seq
        elif seq > hi:
            gaps += seq - hi - 1
            high[sensor] = seq
        else:
            lo = low[sensor]
            if seq < lo:  # arrived before everything seen so far: a gap below
                gaps += lo - seq - 1
                low[sensor] = seq
            elif seq != lo and seq != hi:
                late += 1  # fills a gap counted earlier
    return gaps, late
