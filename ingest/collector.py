"""The MQTT collector: broker -> decode -> validate -> batch -> PostgreSQL, at least once.

In: :class:`~citypulse.settings.Settings` (broker and database URLs, topic prefix, batch
bounds, spool, share group, metrics port).  Out: readings in ``citypulse.raw``, rejects in
``citypulse.dead_letters``, device status in ``citypulse.sensor_status``, Prometheus metrics
at ``/metrics``.  Entry points::

    run_collector(settings)                 # blocks; SIGTERM/SIGINT flush and return
    c = Collector(settings); c.start(); ...; c.stop()   # in-process (tests)

Delivery: MQTT 5, QoS 1, persistent session (clean_start=False, session expiry), manual
acks.  A message is acknowledged only after its readings, dead letters and status are
committed to the database, or written (fsynced) to the on-disk spool while the database
is down.  When the spool is full nothing is acked, so the broker holds the backlog (the
connect property ReceiveMaximum bounds what is in flight here).  Duplicates are dropped
by (sensor, time, metric) in the store.  Nothing raises out of a callback: unexpected
exceptions are logged and counted in ``citypulse_ingest_internal_errors_total``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from psycopg import sql

from citypulse import schema
from citypulse.settings import Settings
from citypulse.wire import payload as wp
from citypulse.wire import topics as wt
from ingest import fastdecode
from ingest import registry as reg
from ingest.sources.base import PAYLOAD
from ingest.sources.hub import SourceHub
from ingest.validate import (
    EPOCH,
    DeadLetter,
    Validated,
    Window,
    dead_letter,
    merge_rows,
    to_time,
    validate,
)

log = logging.getLogger("citypulse.ingest")

TEMPORARY = (psycopg.OperationalError, psycopg.InterfaceError)
_COPY_DEAD = sql.SQL("COPY citypulse.dead_letters (received_at, topic, reason, payload, detail, "
                     "sensor_id) FROM STDIN (FORMAT BINARY)")
_DEAD_TYPES = ("timestamptz", "text", "text", "bytea", "text", "text")
_STATUS_UPSERT = """
INSERT INTO citypulse.sensor_status (sensor_id, status, changed_at) VALUES (%s, %s, %s)
ON CONFLICT (sensor_id) DO UPDATE SET status = EXCLUDED.status, changed_at = EXCLUDED.changed_at
WHERE citypulse.sensor_status.status IS DISTINCT FROM EXCLUDED.status
"""
_US = timedelta(microseconds=1)
LAG_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0,
               1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0)


@dataclass(frozen=True, slots=True)
class Message:
    """One received MQTT message, as queued for a writer."""

    gen: int          # connection generation: acks only go to the connection it came on
    mid: int
    qos: int
    topic: str
    payload: bytes
    received_ms: int
    content_type: str | None
    rate_limited: bool


@dataclass(frozen=True, slots=True)
class Batch:
    """What a writer commits at once (and spools when the database is down)."""

    rows: tuple[tuple, ...]
    dead: tuple[DeadLetter, ...]
    status: tuple[tuple[str, str, datetime], ...]
    duplicates: int = 0
    gateways: tuple[tuple[str, datetime, int], ...] = ()  # heartbeats: id, last seen, messages
    side: tuple[tuple, ...] = ()     # source adapters' side records (SourceHub.write_side)
    foreign: tuple = ()              # (source, Handled) per source message: metrics, not spooled


class Metrics:
    """The collector's Prometheus metrics, in their own registry."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        p = "citypulse_ingest_"
        self.messages = Counter(p + "messages", "MQTT messages received", ["kind", "source"],
                                registry=r)
        self.stored = Counter(p + "readings_stored", "Reading rows committed", registry=r)
        self.dead = Counter(p + "dead_letters", "Dead letters committed", ["reason"], registry=r)
        self.commit = Histogram(p + "batch_commit_seconds", "Batch commit latency", registry=r)
        self.batch_rows = Histogram(p + "batch_rows", "Rows per batch", registry=r,
                                    buckets=(1, 10, 100, 1000, 5000, 10000, 20000, 50000))
        self.lag = Histogram(p + "lag_seconds", "Sensor timestamp to commit (sampled)",
                             buckets=LAG_BUCKETS, registry=r)
        self.spool_bytes = Gauge(p + "spool_bytes", "Bytes in the on-disk spool", registry=r)
        self.seq_gaps = Counter(p + "seq_gaps", "Seqs skipped when a sensor's seq jumped ahead",
                                registry=r)
        self.seq_late = Counter(p + "seq_late", "Readings arriving below their sensor's highest "
                                "seq (fill gaps); loss = seq_gaps - seq_late", registry=r)
        self.duplicates = Counter(p + "duplicates", "Duplicate metric values dropped", registry=r)
        self.internal = Counter(p + "internal_errors", "Unexpected exceptions", registry=r)
        self.db_errors = Counter(p + "db_errors", "Database errors", ["kind"], registry=r)
        self.queue = Gauge(p + "queue_messages", "Messages received, not yet acked", registry=r)
        self.connected = Gauge(p + "mqtt_connected", "1 while connected and subscribed",
                               registry=r)

    def value(self, name: str, **labels: str) -> float:
        """Current value of a sample (0 when absent)."""
        return self.registry.get_sample_value(name, labels or None) or 0.0


class Spool:
    """A bounded on-disk spool of encoded batches: one fsynced file per batch."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self.bytes = sum(p.stat().st_size for p in self.dir.glob("*.batch"))

    @staticmethod
    def encode(b: Batch) -> bytes:
        """Batch -> MessagePack (times as epoch microseconds)."""
        def us(t: datetime) -> int:
            return (t - EPOCH) // _US

        return msgspec.msgpack.encode({
            "rows": [(us(r[0]), *r[1:]) for r in b.rows],
            "dead": [(us(d.received_at), d.topic, d.reason, d.payload, d.detail, d.sensor_id)
                     for d in b.dead],
            "status": [(s, st, us(t)) for s, st, t in b.status],
            "dups": b.duplicates,
            "gateways": [(g, us(t), n) for g, t, n in b.gateways],
            "side": [list(x) for x in b.side],
        })

    @staticmethod
    def decode(data: bytes) -> Batch:
        """Inverse of :meth:`encode`."""
        doc = msgspec.msgpack.decode(data)
        return Batch(
            tuple((EPOCH + r[0] * _US, *r[1:]) for r in doc["rows"]),
            tuple(DeadLetter(EPOCH + d[0] * _US, d[1], d[2], d[3], d[4], d[5])
                  for d in doc["dead"]),
            tuple((s, st, EPOCH + t * _US) for s, st, t in doc["status"]),
            doc.get("dups", 0),
            tuple((g, EPOCH + t * _US, n) for g, t, n in doc.get("gateways", ())),
            tuple(tuple(x) for x in doc.get("side", ())))

    def put(self, b: Batch) -> bool:
        """Write a batch durably; False when the spool is full (caller must not ack)."""
        data = self.encode(b)
        with self._lock:
            if self.bytes + len(data) > self.max_bytes:
                return False
            self.bytes += len(data)
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        tmp = self.dir / (name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.rename(self.dir / (name + ".batch"))
        dfd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        return True

    def files(self) -> list[Path]:
        """Spooled batch files, oldest first."""
        return sorted(self.dir.glob("*.batch"))

    def remove(self, path: Path) -> None:
        """Forget a batch that has been committed."""
        size = path.stat().st_size
        path.unlink()
        with self._lock:
            self.bytes -= size


class Collector:
    """One collector process's worth of machinery (see module docstring)."""

    def __init__(self, settings: Settings, *, client_id: str | None = None) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.sources = SourceHub(settings, self.metrics.registry)
        group = settings.share_group
        self.client_id = (client_id or settings.client_id
                          or f"citypulse-ingest-{socket.gethostname()}" + (f"-{group}" if group else ""))
        self.inbox: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self.spool = Spool(Path(settings.spool_dir) / self.client_id, settings.spool_max_bytes)
        self.metrics.spool_bytes.set(self.spool.bytes)
        self.registry: dict[str, reg.Registered] = {}
        self._registry_at = 0.0
        self._registry_lock = threading.Lock()
        self._seq_lock = threading.Lock()
        self._last_seq: dict[int, tuple[int, int]] = {}
        self._buckets: dict[str, list[float]] = {}
        self._gen = 0
        self._gen_lock = threading.Lock()
        self._accepting = threading.Event()
        self._stopping = threading.Event()
        self._db_down = threading.Event()
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._http = None
        self.metrics_port: int | None = None
        self.store: schema.Store | None = None
        self.client: mqtt.Client | None = None

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Open the store (migrating), load the registry, connect, start writer threads."""
        s = self.settings
        conn = self._connect_db(wait=True)
        try:
            self.store = schema.Store.open(conn, s)
            self._refresh_registry(conn, force=True)
        finally:
            conn.close()
        if s.metrics_port is not None:
            self._http, _ = start_http_server(s.metrics_port, addr=s.metrics_host,
                                              registry=self.metrics.registry)
            self.metrics_port = self._http.server_port
        for i in range(s.writer_connections):
            self._spawn(self._writer_loop, f"writer-{i}")
        self._spawn(self._upkeep_loop, "upkeep")
        self._accepting.set()
        self.client = self._mqtt_client()
        ep = s.mqtt
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 7 * 86400
        props.ReceiveMaximum = max(1, min(s.max_inflight_messages, 65535))
        self.client.connect_async(ep.host, ep.port, keepalive=30, clean_start=False,
                                  properties=props)
        self.client.loop_start()
        log.info("event=started client_id=%s broker=%s:%s writers=%d share=%s", self.client_id,
                 ep.host, ep.port, s.writer_connections, s.share_group)

    def _spawn(self, fn, name: str) -> None:
        t = threading.Thread(target=fn, name=f"{self.client_id}-{name}", daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking messages, commit and ack what was received, disconnect."""
        self._accepting.clear()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._pending_lock:
                if self._pending == 0:
                    break
            time.sleep(0.02)
        self._stopping.set()
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
        if self._http is not None:
            self._http.shutdown()
        log.info("event=stopped client_id=%s", self.client_id)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until every received message has been committed and acked (tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._pending_lock:
                if self._pending == 0:
                    return True
            time.sleep(0.02)
        return False

    # --- MQTT side (network thread) -----------------------------------------------------------
    def _mqtt_client(self) -> mqtt.Client:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                        protocol=mqtt.MQTTv5, manual_ack=True)
        ep = self.settings.mqtt
        if ep.username:
            c.username_pw_set(ep.username, ep.password)
        if ep.tls:
            c.tls_set(ca_certs=str(self.settings.mqtt_ca_file) if self.settings.mqtt_ca_file else None)
        c.reconnect_delay_set(0.2, 5)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        return c

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        try:
            if reason_code.is_failure:
                log.warning("event=connect_refused reason=%r", reason_code)
                return
            with self._gen_lock:
                self._gen += 1
            subs = wt.ingest_subscriptions(self.settings.topic_prefix) + self.sources.subscriptions()
            if self.settings.share_group:
                subs = [f"$share/{self.settings.share_group}/{t}" for t in subs]
            client.subscribe([(t, SubscribeOptions(qos=1)) for t in subs])
            log.info("event=connected session_present=%s gen=%d subscriptions=%s",
                     flags.session_present, self._gen, subs)
        except Exception:
            log.exception("event=internal_error where=on_connect")
            self.metrics.internal.inc()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        bad = [rc for rc in reason_codes if rc.is_failure]
        if bad:
            log.warning("event=subscribe_refused reasons=%s", bad)
        else:
            self.metrics.connected.set(1)  # ready: connected and subscribed

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._gen_lock:  # acks of this connection's messages must not reach the next
            self._gen += 1
        self.metrics.connected.set(0)
        log.warning("event=disconnected reason=%r", reason_code)

    def _on_message(self, client, userdata, msg) -> None:
        try:
            if not self._accepting.is_set():
                return  # not acked: the broker redelivers it to this session later
            props = getattr(msg, "properties", None)
            ctype = getattr(props, "ContentType", None) if props is not None else None
            with self._pending_lock:
                self._pending += 1
            self.inbox.put(Message(self._gen, msg.mid, msg.qos, msg.topic, msg.payload,
                                   int(time.time() * 1000), ctype,
                                   "/status/" not in msg.topic and self._limits(msg.topic)
                                   and self._rate_limited(msg.topic)))
        except Exception:
            log.exception("event=internal_error where=on_message")
            self.metrics.internal.inc()

    def _limits(self, topic: str) -> bool:
        """Whether ``topic`` is one device's (not a source's topic shared by many gateways)."""
        if not self.sources.active:
            return True
        src = self.sources.claim(topic)
        return src is None or src.trust != PAYLOAD

    def _rate_limited(self, topic: str) -> bool:
        """Token bucket per device (sensor or gateway) at settings.device_rate_limit msg/s."""
        rate = self.settings.device_rate_limit
        now = time.monotonic()
        b = self._buckets.get(topic)
        cap = max(2.0 * rate, 5.0)
        if b is None:
            if len(self._buckets) > 1_000_000:  # bounded: forget idle devices
                self._buckets.clear()
            self._buckets[topic] = [cap - 1.0, now]
            return False
        tokens = min(cap, b[0] + (now - b[1]) * rate)
        b[1] = now
        if tokens < 1.0:
            b[0] = tokens
            return True
        b[0] = tokens - 1.0
        return False

    def _ack(self, msgs: list[Message]) -> None:
        client = self.client
        with self._gen_lock:
            gen = self._gen
            for m in msgs:
                if m.qos > 0 and m.gen == gen and client is not None:
                    client.ack(m.mid, m.qos)
        with self._pending_lock:
            self._pending -= len(msgs)
        self.metrics.queue.set(self._pending)

    # --- writer threads -----------------------------------------------------------------------
    def _take(self) -> list[Message]:
        s = self.settings
        try:
            first = self.inbox.get(timeout=0.1)
        except queue.Empty:
            return []
        msgs = [first]
        deadline = time.monotonic() + s.batch_max_ms / 1000
        approx = 1
        while approx < s.batch_max_readings:
            left = deadline - time.monotonic()
            try:
                m = self.inbox.get_nowait() if left <= 0 else self.inbox.get(timeout=left)
            except queue.Empty:
                break
            msgs.append(m)
            approx += max(1, len(m.payload) // 80)
            if left <= 0 and approx >= 64:
                break
        return msgs

    def _writer_loop(self) -> None:
        conn: psycopg.Connection | None = None
        while not self._stopping.is_set():
            msgs = self._take()
            if not msgs:
                continue
            try:
                batch = self._build(msgs, conn)
                conn = self._commit(batch, conn, msgs)
                for name, h in batch.foreign:
                    self.sources.account(name, h)
            except Exception:
                log.exception("event=internal_error where=writer")
                self.metrics.internal.inc()
                with self._pending_lock:
                    self._pending -= len(msgs)
                with contextlib.suppress(Exception):
                    if conn is not None:
                        conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def _build(self, msgs: list[Message], conn: psycopg.Connection | None) -> Batch:
        s = self.settings
        now_ms = int(time.time() * 1000)
        window = Window.around(now_ms, s.raw_retention_days, s.max_future_s)
        rows: list[tuple] = []
        dead: list[DeadLetter] = []
        status: list[tuple[str, str, datetime]] = []
        dups = 0
        retry: list[tuple[Message, wt.Topic, wp.Decoded]] = []
        kinds: dict[str, int] = {}
        seen: dict[str, list[int]] = {}  # gateway heartbeats: id -> [latest ms, messages]
        foreign: list[tuple[str, object]] = []  # (source, Handled)
        src_retry: list = []
        for m in msgs:
            topic = wt.parse(m.topic, s.topic_prefix)
            src = self.sources.claim(m.topic) if (topic.kind == wt.UNKNOWN
                                                  and self.sources.active) else None
            if src is not None:  # a foreign source's message: its adapter decodes it
                kinds[(src.name, src.name)] = kinds.get((src.name, src.name), 0) + 1
                h = self.sources.handle(src, m.topic, m.payload, m.received_ms, m.rate_limited,
                                        self.registry, window)
                if h.unknown:  # maybe registered since the last snapshot: retry after refresh
                    src_retry.append((src, m))
                else:
                    foreign.append((src.name, h))
                continue
            kinds[(topic.kind, "native")] = kinds.get((topic.kind, "native"), 0) + 1
            if topic.kind == wt.GATEWAY:  # any message, even one we reject, shows it is up
                hb = seen.setdefault(topic.ident, [m.received_ms, 0])
                hb[0] = max(hb[0], m.received_ms)
                hb[1] += 1
            if topic.kind == wt.STATUS:
                text = m.payload[:64].decode("utf-8", "replace").strip().lower()
                if text in ("online", "offline"):
                    status.append((topic.ident, text, to_time(m.received_ms)))
                else:
                    dead.append(dead_letter(m.received_ms, m.topic, wp.MALFORMED, m.payload,
                                            "status must be 'online' or 'offline'", topic.ident))
                continue
            if m.rate_limited:
                dead.append(dead_letter(m.received_ms, m.topic, wp.RATE_LIMITED, m.payload,
                                        f"over {s.device_rate_limit:g} messages/s",
                                        topic.ident or None))
                continue
            decoded = fastdecode.decode(m.payload, topic, m.received_ms,
                                        max_bytes=s.max_payload_bytes,
                                        content_type=m.content_type)
            v = validate(decoded, topic, m.topic, m.payload, m.received_ms, self.registry, window)
            if v.unknown_sensors:
                retry.append((m, topic, decoded))
                continue
            rows.extend(v.rows)
            dead.extend(v.dead)
            dups += v.duplicates
        if (retry or src_retry) and not self._db_down.is_set():
            with contextlib.suppress(*TEMPORARY):
                if conn is None or conn.closed:
                    with self._connect_db() as c:
                        self._refresh_registry(c)
                else:
                    self._refresh_registry(conn)
            for m, topic, decoded in retry:
                v = validate(decoded, topic, m.topic, m.payload, m.received_ms, self.registry,
                             window)
                rows.extend(v.rows)
                dead.extend(v.dead)
                dups += v.duplicates
        for src, m in src_retry:
            foreign.append((src.name, self.sources.handle(
                src, m.topic, m.payload, m.received_ms, m.rate_limited, self.registry, window)))
        side: list[tuple] = []
        for _name, h in foreign:
            rows.extend(h.rows)
            dead.extend(h.dead)
            status.extend(h.status)
            side.extend(h.side)
            dups += h.duplicates
        for (k, source), n in kinds.items():
            self.metrics.messages.labels(k, source).inc(n)
        unique, more = merge_rows(rows)
        return Batch(tuple(unique), tuple(dead), tuple(status), dups + more,
                     tuple((g, to_time(t), n) for g, (t, n) in seen.items()), tuple(side),
                     tuple(foreign))

    def _commit(self, batch: Batch, conn: psycopg.Connection | None,
                msgs: list[Message]) -> psycopg.Connection | None:
        """Commit (or spool) ``batch``, then ack ``msgs``; returns the connection to reuse."""
        delay = 0.1
        give_up = time.monotonic() + 3.0
        while True:
            if not self._db_down.is_set() or self._stopping.is_set():
                try:
                    if conn is None or conn.closed:
                        conn = self._connect_db()
                    self._write(conn, batch)
                    break
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
                self._account(batch, spooled=True)
                break
            # spool full: hold the messages (no ack) until the database is back
            log.warning("event=spool_full bytes=%d action=hold_acks",
                        self.spool.bytes)
            time.sleep(1.0)
        self._ack(msgs)
        return conn

    def _write(self, conn: psycopg.Connection, batch: Batch) -> None:
        """Commit a batch; permanent errors are isolated by bisecting the rows."""
        t0 = time.perf_counter()
        try:
            with conn.transaction():
                res = self.store.write_rows(conn, batch.rows)
                self._write_side(conn, batch.dead, batch.status, batch.gateways, batch.side)
        except TEMPORARY:
            raise
        except psycopg.DatabaseError as exc:
            self.metrics.db_errors.labels("permanent").inc()
            log.warning("event=batch_rejected error=%r action=bisect", str(exc).strip()[:200])
            with conn.transaction():
                self._write_side(conn, batch.dead, batch.status, batch.gateways, batch.side)
            self._account(Batch((), batch.dead, batch.status, batch.duplicates))
            self._bisect(conn, list(batch.rows))
            return
        self.metrics.commit.observe(time.perf_counter() - t0)
        self.metrics.batch_rows.observe(len(batch.rows))
        self._account(batch, duplicates=res.duplicates)

    def _bisect(self, conn: psycopg.Connection, rows: list[tuple]) -> None:
        if not rows:
            return
        try:
            with conn.transaction():
                res = self.store.write_rows(conn, rows)
            self._account(Batch(tuple(rows), (), ()), duplicates=res.duplicates)
            return
        except TEMPORARY:
            raise
        except psycopg.DatabaseError as exc:
            if len(rows) == 1:
                r = rows[0]
                d = dead_letter(int(time.time() * 1000), "", wp.MALFORMED,
                                repr(r).encode(), f"database rejected row: {exc}"[:1000])
                with conn.transaction():
                    self._write_side(conn, [d], [])
                self._account(Batch((), (d,), ()))
                return
        mid = len(rows) // 2
        self._bisect(conn, rows[:mid])
        self._bisect(conn, rows[mid:])

    def _write_side(self, conn: psycopg.Connection, dead, status, gateways=(), side=()) -> None:
        if gateways:
            self.store.touch_gateways(conn, {g: (t, n) for g, t, n in gateways})
        if side:
            self.sources.write_side(conn, side)
        with conn.cursor() as cur:
            if dead:
                with cur.copy(_COPY_DEAD) as copy:
                    copy.set_types(_DEAD_TYPES)
                    for d in dead:
                        copy.write_row(d.as_row())
            if status:
                cur.executemany(_STATUS_UPSERT, list(status))

    def _account(self, batch: Batch, *, duplicates: int = 0, spooled: bool = False) -> None:
        """Update metrics after a commit (or spool) of ``batch``."""
        m = self.metrics
        for d in batch.dead:
            m.dead.labels(d.reason).inc()
        if duplicates or batch.duplicates:
            m.duplicates.inc(duplicates + batch.duplicates)
        if not batch.rows:
            return
        if not spooled:
            m.stored.inc(len(batch.rows) - duplicates)
            now = datetime.now(UTC)
            step = max(1, len(batch.rows) // 256)
            for r in batch.rows[::step]:
                m.lag.observe(max(0.0, (now - r[0]).total_seconds()))
        gaps = late = 0
        with self._seq_lock:
            last = self._last_seq
            for r in batch.rows:
                seq = r[2]
                if seq is None:
                    continue
                seen = last.get(r[1])  # (lowest, highest) seq seen for this sensor
                if seen is None:
                    last[r[1]] = (seq, seq)
                    continue
                low, high = seen
                if seq > high:
                    gaps += seq - high - 1
                    last[r[1]] = (low, seq)
                elif seq < low:  # arrived before everything seen so far: a gap below
                    gaps += low - seq - 1
                    last[r[1]] = (seq, high)
                elif seq != low and seq != high:
                    late += 1  # fills a gap counted earlier
        if gaps:
            m.seq_gaps.inc(gaps)
        if late:
            m.seq_late.inc(late)

    # --- database helpers ---------------------------------------------------------------------
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

    def _refresh_registry(self, conn: psycopg.Connection, force: bool = False) -> bool:
        """Reload the registry snapshot (at most every 5 s unless forced)."""
        with self._registry_lock:
            if not force and time.monotonic() - self._registry_at < 5.0:
                return False
            self.registry = reg.snapshot(conn)
            if self.sources.active:
                self.sources.refresh(conn)
            self._registry_at = time.monotonic()
        log.debug("event=registry_refreshed sensors=%d", len(self.registry))
        return True

    def _upkeep_loop(self) -> None:
        """Drain the spool when the database is back; maintain partitions; refresh registry."""
        last_maint = time.monotonic()
        last_reg = time.monotonic()
        while not self._stopping.wait(0.5):
            try:
                if self.spool.files() or self._db_down.is_set():
                    self._drain_spool()
                now = time.monotonic()
                if now - last_maint > 30 and not self._db_down.is_set():
                    last_maint = now
                    with self._connect_db() as conn:
                        self.store.maintain(conn)
                if now - last_reg > 60 and not self._db_down.is_set():
                    last_reg = now
                    with self._connect_db() as conn:
                        self._refresh_registry(conn, force=True)
            except TEMPORARY as exc:
                log.warning("event=db_unavailable where=upkeep error=%r", str(exc).strip()[:200])
            except psycopg.Error as exc:  # e.g. a role without DDL rights: partitions by a worker
                self.metrics.db_errors.labels("upkeep").inc()
                log.warning("event=upkeep_failed error=%r", str(exc).strip()[:200])
            except Exception:
                log.exception("event=internal_error where=upkeep")
                self.metrics.internal.inc()

    def _drain_spool(self) -> None:
        with self._connect_db() as conn:
            for path in self.spool.files():
                batch = Spool.decode(path.read_bytes())
                self._write_spooled(conn, batch)
                self.spool.remove(path)
                self.metrics.spool_bytes.set(self.spool.bytes)
            if not self.spool.files():
                if self._db_down.is_set():
                    log.info("event=spool_drained")
                self._db_down.clear()

    def _write_spooled(self, conn: psycopg.Connection, batch: Batch) -> None:
        try:
            with conn.transaction():
                res = self.store.write_rows(conn, batch.rows)
                self._write_side(conn, batch.dead, batch.status, batch.gateways, batch.side)
        except TEMPORARY:
            raise
        except psycopg.DatabaseError:
            with conn.transaction():
                self._write_side(conn, batch.dead, batch.status, batch.gateways, batch.side)
            self._bisect(conn, list(batch.rows))
            return
        self.metrics.stored.inc(len(batch.rows) - res.duplicates)
        if res.duplicates:
            self.metrics.duplicates.inc(res.duplicates)


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
    if c.metrics_port is not None:
        print(f"metrics on http://127.0.0.1:{c.metrics_port}/metrics", flush=True)
    while not done.wait(1.0):
        pass
    c.stop()


# keep a reference to Validated for type readers of this module
__all__ = ["Batch", "Collector", "Message", "Metrics", "Spool", "Validated", "run_collector"]
