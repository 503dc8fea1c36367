"""Committed readings -> one message per committed batch on the internal topic (opt-in).

In: the settings (``sta_mqtt`` on: the collector builds one :class:`Announcer`), the
collector's client id and metrics.  Out: after each commit the writer calls
:meth:`Announcer.committed` with the connection, the rows and the store's
:class:`~citypulse.schema.store.WriteResult`; it publishes them (QoS 1, not retained) on
:func:`citypulse.wire.topics.committed` in the :mod:`citypulse.wire.committed` format, for
the SensorThings MQTT relay (:mod:`standards.sta.mqtt`).

Only committed rows are announced: dead letters never, a spooled batch when it is drained
into the database.  When the store merged the batch into rows already there (a redelivery),
the stored values of its keys are read back and announced, so a message always carries what
the database holds.  Delivery is at least once (a redelivered reading is announced again);
an announcement that cannot be made is logged and counted, never raised into the writer.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

import paho.mqtt.client as mqtt
import psycopg
from psycopg import sql

from citypulse.schema.store import RAW_COLUMNS, WriteResult
from citypulse.settings import Settings
from citypulse.wire import committed as wc
from citypulse.wire import topics as wt
from citypulse.wire.session import Session
from ingest.metrics import Metrics

log = logging.getLogger("citypulse.ingest")

_STORED = sql.SQL(
    "SELECT {} FROM citypulse.raw r WHERE (r.sensor, r.time) IN "
    "(SELECT * FROM unnest(%s::int4[], %s::timestamptz[]))").format(
        sql.SQL(", ").join(sql.Identifier("r", c) for c in RAW_COLUMNS))


class Announcer:
    """Publishes committed batches for one collector (thread-safe: paho's publish is)."""

    def __init__(self, settings: Settings, client_id: str, metrics: Metrics) -> None:
        self.topic = wt.committed(settings.topic_prefix)
        self.metrics = metrics
        # its own connection: the collector's session acks manually and holds a backlog
        self.session = Session(settings.mqtt_url, client_id + "-committed", [],
                               lambda *_a: None, ca_file=settings.mqtt_ca_file, connect=False)
        self._last = None  # the latest publish: close() waits for it to reach the broker
        self.session.client.on_publish = self._on_publish

    def start(self) -> None:
        """Connect in the background (paho retries until the broker is there)."""
        self.session.start()

    def committed(self, conn: psycopg.Connection, rows: Sequence[tuple],
                  result: WriteResult) -> None:
        """Announce ``rows``, just committed on ``conn`` with ``result``; never raises."""
        try:
            if result.inserted != len(rows):  # merged into stored rows: announce what is stored
                rows = stored(conn, rows)
            if rows:
                info = self.session.client.publish(self.topic, wc.encode(rows), qos=1)
                if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:  # paho holds 65,535 at most
                    raise RuntimeError("announcement dropped: the MQTT client's queue is full")
                self._last = info
                self.metrics.committed_published.inc()
        except Exception:
            log.exception("event=internal_error where=announce rows=%d", len(rows))
            self.metrics.internal.inc()

    def _on_publish(self, _c, _u, _mid, reason, _props) -> None:
        if reason.is_failure:  # e.g. an ACL without the collector's write on the topic
            log.warning("event=announce_refused topic=%s reason=%s", self.topic, reason)
            self.metrics.internal.inc()

    def close(self, timeout: float = 5.0) -> None:
        """Wait (up to ``timeout``) until the latest announcement reached the broker, disconnect."""
        last = self._last
        if last is not None:
            with contextlib.suppress(Exception):  # not connected: nothing more to wait for
                last.wait_for_publish(timeout)
        self.session.close()


def stored(conn: psycopg.Connection, rows: Sequence[tuple]) -> list[tuple]:
    """The stored rows at the (sensor, time) keys of ``rows`` (each once, keys may repeat)."""
    return conn.execute(_STORED, ([r[1] for r in rows], [r[0] for r in rows])).fetchall()
