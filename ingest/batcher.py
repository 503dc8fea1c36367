"""The collector's batcher: received messages -> one batch of rows, dead letters, status.

In: :class:`Message` records taken from the session's inbox (:func:`take`, bounded by
``batch_max_ms`` and ``batch_max_readings``), the registry snapshot.  Out: a :class:`Batch`
(rows, which may repeat a (sensor, time) across messages: the store folds those when its
unique key stops the COPY; dead letters with reasons, device status, gateway heartbeats).
:meth:`Batcher.build` never raises for any input; unknown sensors get one registry refresh
before they are dead-lettered.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

import psycopg

from citypulse.settings import Settings
from citypulse.wire import payload as wp
from citypulse.wire import topics as wt
from ingest import fastdecode
from ingest import registry as reg
from ingest.metrics import Metrics
from ingest.sources.hub import SourceHub
from ingest.validate import DeadLetter, Window, dead_letter, to_time, validate

log = logging.getLogger("citypulse.ingest")

TEMPORARY = (psycopg.OperationalError, psycopg.InterfaceError)
WIRE_BYTES_PER_READING = 80  # about, on the wire: what sizes a batch in bytes


class Message(NamedTuple):
    """One received MQTT message, as queued for a writer (a tuple: cheap to make per message)."""

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
    received_ms: int | None = field(default=None, compare=False)  # oldest arrival: metrics only
    # rows[:n] already in binary COPY row format (data, n), made by the C pass: not spooled
    encoded: tuple[bytes, int] = field(default=(b"", 0), compare=False)


class Inbox:
    """Received messages waiting for a writer, handed over a batch at a time.

    The network thread appends (one lock, no wake-up per message); a writer waits for the
    first message, then until the batch bounds fill or ``batch_max_ms`` passes, and takes the
    lot: no per-message hand-off between threads.
    """

    def __init__(self) -> None:
        self._items: list[Message] = []
        self._bytes = 0
        self._want = 1 << 62
        self._want_msgs = 1 << 62
        self._cond = threading.Condition(threading.Lock())

    def put(self, m: Message) -> None:
        """Queue one message (network thread)."""
        with self._cond:
            self._items.append(m)
            self._bytes += len(m.payload)
            if (len(self._items) == 1 or self._bytes >= self._want
                    or len(self._items) >= self._want_msgs):
                self._cond.notify()

    def __len__(self) -> int:
        return len(self._items)

    def take(self, max_readings: int, max_ms: int, max_msgs: int = 1 << 62) -> list[Message]:
        """The next batch: wait 0.1 s for a message, then up to ``max_ms`` for the bounds.

        The bounds: ``max_readings`` (as ~80 bytes each on the wire) or ``max_msgs`` messages,
        whichever fills first.  ``max_msgs`` is a share of the in-flight window: once that
        many messages wait, waiting longer only holds the broker back (nothing more can come
        before an ack).
        """
        want = max_readings * WIRE_BYTES_PER_READING
        with self._cond:
            if not self._items and not self._cond.wait(0.1) and not self._items:
                return []
            deadline = time.monotonic() + max_ms / 1000
            self._want, self._want_msgs = want, max_msgs
            while self._items and self._bytes < want and len(self._items) < max_msgs:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            self._want = self._want_msgs = 1 << 62
            items = self._items
            if self._bytes <= want and len(items) <= max_msgs:
                self._items, self._bytes = [], 0
                return items
            n = size = 0
            for m in items:  # more than a batch: take a batch's worth
                size += len(m.payload)
                n += 1
                if size >= want or n >= max_msgs:
                    break
            self._items, self._bytes = items[n:], self._bytes - size
            if self._items:
                self._cond.notify()  # another writer can take the rest
            return items[:n]


def take(inbox: Inbox, settings: Settings) -> list[Message]:
    """The next messages to batch (see :meth:`Inbox.take`).

    A batch is cut at a share of the in-flight window (``max_inflight_messages`` over the
    writers plus one being filled), so single-reading messages never wait out
    ``batch_max_ms`` with the window already full.
    """
    share = max(1, settings.max_inflight_messages // (settings.writer_connections + 1))
    return inbox.take(settings.batch_max_readings, settings.batch_max_ms, share)


class Batcher:
    """Decodes and validates messages against the registry snapshot it keeps fresh."""

    def __init__(self, settings: Settings, metrics: Metrics,
                 connect_db: Callable[[], psycopg.Connection],
                 db_down: threading.Event, sources: SourceHub | None = None) -> None:
        self.settings = settings
        self.sources = sources
        self.metrics = metrics
        self._connect_db = connect_db
        self._db_down = db_down
        self.registry: dict[str, reg.Registered] = {}
        self.registry_at = 0.0
        self._registry_lock = threading.Lock()

    def refresh_registry(self, conn: psycopg.Connection, force: bool = False) -> bool:
        """Reload the registry snapshot (at most every 5 s unless forced)."""
        with self._registry_lock:
            if not force and time.monotonic() - self.registry_at < 5.0:
                return False
            self.registry = reg.snapshot(conn)
            if self.sources is not None and self.sources.active:
                self.sources.refresh(conn)
            self.registry_at = time.monotonic()
        log.debug("event=registry_refreshed sensors=%d", len(self.registry))
        return True

    def build(self, msgs: list[Message], conn: psycopg.Connection | None) -> Batch:
        """Messages -> one batch (see module docstring); ``conn`` serves a registry refresh."""
        s = self.settings
        now_ms = int(time.time() * 1000)
        window = Window.of(now_ms, s)
        rows: list[tuple] = []
        dead: list[DeadLetter] = []
        status: list[tuple[str, str, datetime]] = []
        dups = 0
        retry: list[tuple[Message, wt.Topic, wp.Decoded]] = []
        kinds: dict[str, int] = {}
        seen: dict[str, list[int]] = {}  # gateway heartbeats: id -> [latest ms, messages]
        foreign: list[tuple[str, object]] = []  # (source, Handled)
        src_retry: list = []
        times: dict[int, datetime] = {}
        copy = bytearray()  # rows[:copied] in COPY format while every row so far has a copy
        copied = 0
        hub = self.sources if self.sources is not None and self.sources.active else None
        for m in msgs:
            topic = wt.parse(m.topic, s.topic_prefix)
            src = hub.claim(m.topic) if hub is not None and topic.kind == wt.UNKNOWN else None
            if src is not None:  # a foreign source's message: its adapter decodes it
                kinds[(src.name, src.name)] = kinds.get((src.name, src.name), 0) + 1
                h = hub.handle(src, m.topic, m.payload, m.received_ms, m.rate_limited,
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
            if len(m.payload) <= s.max_payload_bytes:  # the typed one-pass path
                size = len(copy)
                fast = fastdecode.rows(m.payload, topic, m.received_ms, m.content_type,
                                       self.registry, window, times,
                                       copy if copied == len(rows) else None)
                if fast is not None:
                    if len(copy) != size:
                        copied += len(fast)
                    rows.extend(fast)
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
                        self.refresh_registry(c)
                else:
                    self.refresh_registry(conn)
            for m, topic, decoded in retry:
                v = validate(decoded, topic, m.topic, m.payload, m.received_ms, self.registry,
                             window)
                rows.extend(v.rows)
                dead.extend(v.dead)
                dups += v.duplicates
        for src, m in src_retry:
            foreign.append((src.name, hub.handle(src, m.topic, m.payload, m.received_ms,
                                                 m.rate_limited, self.registry, window)))
        side: list[tuple] = []
        for _name, h in foreign:
            rows.extend(h.rows)
            dead.extend(h.dead)
            status.extend(h.status)
            side.extend(h.side)
            dups += h.duplicates
        for (k, source), n in kinds.items():
            self.metrics.messages.labels(k, source).inc(n)
        # rows repeating a (sensor, time) are folded by the store only when its unique key
        # stops the COPY (Store.write_rows), not checked here for every batch
        return Batch(tuple(rows), tuple(dead), tuple(status), dups,
                     tuple((g, to_time(t), n) for g, (t, n) in seen.items()), tuple(side),
                     tuple(foreign), min((m.received_ms for m in msgs), default=None),
                     (bytes(copy), copied) if copied else (b"", 0))
