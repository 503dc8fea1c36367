"""The MQTT collector: broker -> decode -> validate -> batch -> PostgreSQL, at least once.

In: :class:`~citypulse.settings.Settings` (broker and database URLs, topic prefix, batch
bounds, spool, share group, metrics port).  Out: readings in ``citypulse.raw``, rejects in
``citypulse.dead_letters``, device status in ``citypulse.sensor_status``, Prometheus metrics
at ``/metrics``; with ``sta_mqtt`` on, each committed batch announced on the internal
``committed`` topic (:mod:`ingest.announce`).  Entry points::

    run_collector(settings)                 # blocks; SIGTERM/SIGINT flush and return
    c = Collector(settings); c.start(); ...; c.stop()   # in-process (tests)

The parts, one module each: :mod:`ingest.session` (MQTT session, rate limit, acks),
:mod:`ingest.batcher` (messages -> batch), :mod:`ingest.writer` (batch -> store or spool,
retry, bisect, seq accounting), :mod:`ingest.spool`, :mod:`ingest.metrics`.  This module
wires them together and runs the upkeep thread.

Delivery: MQTT 5, QoS 1, persistent session, manual acks.  A message is acknowledged only
after its readings, dead letters and status are committed to the database, or written
(fsynced) to the on-disk spool while the database is down.  When the spool is full nothing
is acked, so the broker holds the backlog (the connect property ReceiveMaximum bounds what
is in flight here).  Duplicates are dropped by (sensor, time, metric) in the store.
Store upkeep (partitions, retention, rollups) runs in one collector only: the one holding
the store's upkeep lock (:meth:`Store.claim_upkeep`); another takes over when it exits.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import signal
import socket
import threading
import time
from pathlib import Path

import psycopg
from prometheus_client import start_http_server

from citypulse import schema
from citypulse.settings import Settings
from ingest import fastdecode
from ingest import registry as reg
from ingest.announce import Announcer
from ingest.batcher import TEMPORARY, Batch, Batcher, Message, take
from ingest.metrics import Metrics
from ingest.session import Session
from ingest.sources.hub import SourceHub
from ingest.spool import Spool
from ingest.validate import Validated
from ingest.writer import Writer

log = logging.getLogger("citypulse.ingest")
GC_THRESHOLDS = (50_000, 20, 100)  # gen0 allocations, gen1 and gen2 passes (default 700, 10, 10)


class Collector:
    """One collector process's worth of machinery (see module docstring)."""

    def __init__(self, settings: Settings, *, client_id: str | None = None) -> None:
        self.settings = settings
        self.metrics = Metrics()
        group = settings.share_group
        self.client_id = (client_id or settings.client_id
                          or f"citypulse-ingest-{socket.gethostname()}" + (f"-{group}" if group else ""))
        self.spool = Spool(Path(settings.spool_dir) / self.client_id, settings.spool_max_bytes)
        self.metrics.spool_bytes.set(self.spool.bytes)
        self._stopping = threading.Event()
        self._db_down = threading.Event()
        self.sources = SourceHub(settings, self.metrics.registry)  # CITYPULSE_SOURCES
        self.session = Session(settings, self.client_id, self.metrics, self.sources)
        self.batcher = Batcher(settings, self.metrics, self._connect_db, self._db_down,
                               self.sources)
        self.announcer = Announcer(settings, self.client_id, self.metrics) if settings.sta_mqtt \
            else None  # CITYPULSE_STA_MQTT: each committed batch on the internal topic
        self.writer = Writer(lambda: self.store, self.spool, self.metrics, self._connect_db,
                             self._db_down, self._stopping,
                             self.announcer.committed if self.announcer else None)
        self._threads: list[threading.Thread] = []
        self._http = None
        self.metrics_port: int | None = None
        self.store: schema.Store | None = None

    # --- what tests and tools look at ---------------------------------------------------------
    @property
    def registry(self) -> dict[str, reg.Registered]:
        """The registry snapshot messages are validated against."""
        return self.batcher.registry

    @registry.setter
    def registry(self, value: dict[str, reg.Registered]) -> None:
        self.batcher.registry = value

    @property
    def _registry_at(self) -> float:
        return self.batcher.registry_at

    @_registry_at.setter
    def _registry_at(self, value: float) -> None:  # tests: pretend the rate limit passed
        self.batcher.registry_at = value

    @property
    def inbox(self):
        """Received messages not yet taken by a writer."""
        return self.session.inbox

    @property
    def client(self):
        """The paho client (None before start)."""
        return self.session.client

    @property
    def _pending(self) -> int:
        return self.session.pending

    def _build(self, msgs: list[Message], conn: psycopg.Connection | None) -> Batch:
        return self.batcher.build(msgs, conn)

    def _account(self, batch: Batch, *, duplicates: int = 0, spooled: bool = False) -> None:
        self.writer.account(batch, duplicates=duplicates, spooled=spooled)

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Open the store (migrating), load the registry, connect, start writer threads."""
        s = self.settings
        conn = self._connect_db(wait=True)
        try:
            self.store = schema.Store.open(conn, s)
            self.batcher.refresh_registry(conn, force=True)
        finally:
            conn.close()
        if s.metrics_port is not None:
            self._http, _ = start_http_server(s.metrics_port, addr=s.metrics_host,
                                              registry=self.metrics.registry)
            self.metrics_port = self._http.server_port
        if self.announcer is not None:
            self.announcer.start()
        for i in range(s.writer_connections):
            self._spawn(self._writer_loop, f"writer-{i}")
        self._spawn(self._upkeep_loop, "upkeep")
        self.session.accepting.set()
        self.session.connect()
        ep = s.mqtt
        log.info("event=started client_id=%s broker=%s:%s writers=%d share=%s json_pass=%s",
                 self.client_id, ep.host, ep.port, s.writer_connections, s.share_group,
                 "c" if fastdecode.native is not None else "python (ingest._fastrows not built)")

    def _spawn(self, fn, name: str) -> None:
        t = threading.Thread(target=fn, name=f"{self.client_id}-{name}", daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking messages, commit and ack what was received, disconnect."""
        self.session.accepting.clear()
        deadline = time.monotonic() + timeout
        self.session.wait_idle(timeout)
        self._stopping.set()
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
        self.session.close()
        if self.announcer is not None:
            self.announcer.close()
        if self._http is not None:
            self._http.shutdown()
        log.info("event=stopped client_id=%s", self.client_id)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until every received message has been committed and acked (tests)."""
        return self.session.wait_idle(timeout)

    # --- threads ------------------------------------------------------------------------------
    def _writer_loop(self) -> None:
        conn: psycopg.Connection | None = None
        while not self._stopping.is_set():
            msgs = take(self.session.inbox, self.settings)
            if not msgs:
                continue
            try:
                batch = self.batcher.build(msgs, conn)
                conn = self.writer.commit(batch, conn)
                self.session.ack(msgs)
                for name, h in batch.foreign:  # committed or spooled: per-source metrics
                    self.sources.account(name, h)
            except Exception:
                log.exception("event=internal_error where=writer")
                self.metrics.internal.inc()
                self.session.done(len(msgs))
                with contextlib.suppress(Exception):
                    if conn is not None:
                        conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def _upkeep_loop(self) -> None:
        """Drain the spool, maintain the store (when this collector owns it), refresh registry."""
        last_maint = time.monotonic()
        last_reg = time.monotonic()
        owner: psycopg.Connection | None = None  # holds the upkeep lock while open
        try:
            while not self._stopping.wait(0.5):
                try:
                    if self.spool.files() or self._db_down.is_set():
                        self.writer.drain_spool()
                    now = time.monotonic()
                    if now - last_maint > 30 and not self._db_down.is_set():
                        last_maint = now
                        owner = self._own_upkeep(owner)
                        if owner is not None:
                            self.store.maintain(owner)
                    if now - last_reg > 60 and not self._db_down.is_set():
                        last_reg = now
                        with self._connect_db() as conn:
                            self.batcher.refresh_registry(conn, force=True)
                except TEMPORARY as exc:
                    log.warning("event=db_unavailable where=upkeep error=%r", str(exc).strip()[:200])
                    owner = _close(owner)
                except psycopg.Error as exc:  # e.g. a role without DDL rights
                    self.metrics.db_errors.labels("upkeep").inc()
                    log.warning("event=upkeep_failed error=%r", str(exc).strip()[:200])
                except Exception:
                    log.exception("event=internal_error where=upkeep")
                    self.metrics.internal.inc()
        finally:
            _close(owner)

    def _own_upkeep(self, owner: psycopg.Connection | None) -> psycopg.Connection | None:
        """The connection holding the store's upkeep lock, or None when another process has it."""
        if owner is not None and not owner.closed:
            return owner
        conn = self._connect_db()
        if schema.Store.claim_upkeep(conn):
            log.info("event=upkeep_owner client_id=%s", self.client_id)
            return conn
        conn.close()
        return None

    # --- database -----------------------------------------------------------------------------
    def _connect_db(self, wait: bool = False) -> psycopg.Connection:
        delay = 0.2
        while True:
            try:
                return psycopg.connect(self.settings.database_url, autocommit=True,
                                       connect_timeout=5)
            except TEMPORARY:
                if not wait or self._stopping.is_set():
                    raise
                log.warning("event=db_unreachable retry_in_s=%.1f", delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)


def _close(conn: psycopg.Connection | None) -> None:
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.close()


def run_collector(settings: Settings, *, client_id: str | None = None) -> None:
    """Run a collector until SIGTERM/SIGINT, then flush, ack and exit cleanly."""
    c = Collector(settings, client_id=client_id)
    done = threading.Event()

    def _stop(signum, _frame) -> None:
        log.info("event=signal signum=%d action=flush_and_stop", signum)
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    c.start()
    # the hot path makes short-lived acyclic objects by the million (rows, decoded items):
    # keep what start-up loaded (modules, the registry) out of every cyclic collection and
    # collect the young generation less often; reference counting frees the rows anyway
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    if c.metrics_port is not None:
        print(f"metrics on http://127.0.0.1:{c.metrics_port}/metrics", flush=True)
    while not done.wait(1.0):
        pass
    c.stop()


__all__ = ["Batch", "Collector", "Message", "Metrics", "Spool", "Validated", "run_collector"]
