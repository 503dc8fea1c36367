"""HTTP push: ``POST /api/v1/ingest``, served by the dashboards app as a Flask blueprint.

In: a request with an API key (``Authorization: Bearer <key>`` or ``X-API-Key``) whose scope
is ``ingest:http`` (or ``ingest:*``), a body in the wire contract's JSON (single reading or
array with ``?sensor_id=``; objects carrying ``sensor_id``; the gateway shape) or CSV
(``Content-Type: text/csv``).  Out, only after the database committed what the body carried:

- ``202 {"accepted": n, "duplicates": d}``: every reading stored;
- ``422 {"accepted": n, "rejected": [{"reason", "detail", "sensor_id"}...]}``: the valid
  readings are stored, the others are in dead letters with their reason;
- ``400`` (not JSON/CSV) and ``413`` (too large): the body is in dead letters;
- ``401`` no or unknown key, ``403`` key without the scope, ``404`` HTTP push not enabled
  (``CITYPULSE_SOURCES`` lacks ``http``), ``503`` the database did not commit: nothing is
  acknowledged, retry (duplicates are dropped by (sensor, time, metric)).

The same adapter, mapping, validation and dead letters as the MQTT sources
(:class:`~ingest.sources.hub.SourceHub`).  Requests share one connection pool (psycopg_pool,
``application_name`` ``citypulse-http-push``, the ingest role's URL): no connection is opened
per request, and a connection the database dropped is replaced on the next request.
``install(server, settings)`` adds it.
"""

from __future__ import annotations

import logging
import threading
import time

import flask
import psycopg
from prometheus_client import CollectorRegistry, Counter
from psycopg_pool import ConnectionPool

from citypulse import schema
from citypulse.settings import Settings
from dashboards import auth
from ingest import registry as reg
from ingest import sources
from ingest.sources.hub import SourceHub
from ingest.validate import Window

log = logging.getLogger(__name__)
PATH = "/api/v1/ingest"
SCOPE = "ingest:http"
TOPIC = "http"  # dead letters' topic: http/<key name>
APP_NAME = "citypulse-http-push"  # the pool's connections, as pg_stat_activity shows them
bp = flask.Blueprint("ingest_api", __name__)


class Push:
    """The HTTP push machinery of one dashboards process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.enabled = "http" in settings.sources
        self.metrics = CollectorRegistry()
        self.hub = SourceHub(settings.model_copy(update={"sources": ["http"]}), self.metrics)
        self.messages = Counter("citypulse_ingest_messages", "HTTP push requests judged",
                                ["kind", "source"], registry=self.metrics)
        self.url = settings.ingest_database_url or settings.database_url
        self.source = sources.get("http")
        self.registry: dict = {}
        self._registry_at = 0.0
        self._lock = threading.Lock()
        self.store: schema.Store | None = None
        self._pool: ConnectionPool | None = None

    @property
    def pool(self) -> ConnectionPool:
        """The requests' connection pool, opened on first use (only when push is enabled)."""
        with self._lock:
            if self._pool is None:
                self._pool = ConnectionPool(
                    self.url, min_size=1, max_size=max(2, min(self.settings.web_threads, 8)),
                    open=True, timeout=10.0, check=ConnectionPool.check_connection,
                    kwargs={"autocommit": True, "connect_timeout": 5,
                            "application_name": APP_NAME}, name="http-push")
            return self._pool

    def close(self) -> None:
        """Close the pool (the app is shutting down)."""
        if self._pool is not None:
            self._pool.close()

    def _snapshot(self, conn: psycopg.Connection, force: bool = False) -> None:
        with self._lock:
            if force or time.monotonic() - self._registry_at > 5.0:
                self.registry = reg.snapshot(conn)
                self.hub.refresh(conn)
                self._registry_at = time.monotonic()
            if self.store is None:
                self.store = schema.Store.open(conn, self.settings, migrate_now=False)

    def ingest(self, body: bytes, content_type: str | None, sensor_id: str | None,
               topic: str = TOPIC) -> tuple[int, dict]:
        """Judge and commit one request body; (status, JSON document)."""
        s = self.settings
        now_ms = int(time.time() * 1000)
        window = Window.of(now_ms, s)
        with self.pool.connection() as conn:
            self._snapshot(conn)
            h = self.hub.handle(self.source, topic, body, now_ms, False, self.registry, window,
                                content_type=content_type, sensor_id=sensor_id)
            if h.unknown:
                self._snapshot(conn, force=True)
                h = self.hub.handle(self.source, topic, body, now_ms, False, self.registry,
                                    window, content_type=content_type, sensor_id=sensor_id)
            with conn.transaction():
                res = self.store.write_batch(conn, h.rows, [d.as_row() for d in h.dead],
                                             h.status)
                if h.side:
                    self.hub.write_side(conn, h.side)
        # committed: now it may be acknowledged
        self.messages.labels("http", "http").inc()
        self.hub.account("http", h)
        doc: dict = {"accepted": len(h.rows) - res.duplicates,
                     "duplicates": res.duplicates + h.duplicates}
        if not h.dead:
            return 202, doc
        doc["rejected"] = [{"reason": d.reason, "detail": d.detail, "sensor_id": d.sensor_id}
                           for d in h.dead[:1000]]
        reasons = {d.reason for d in h.dead}
        if reasons == {"too_large"}:
            return 413, doc
        if not h.rows and reasons == {"malformed"} and len(h.dead) == 1:
            return 400, doc
        return 422, doc


@bp.post(PATH)
def ingest():
    """See the module docstring."""
    push: Push = flask.current_app.extensions["citypulse_ingest_push"]
    if not push.enabled:
        return flask.jsonify({"error": "HTTP push is not enabled (CITYPULSE_SOURCES=...,http)"}), 404
    key = auth.require_scope(SCOPE)  # 401 without a valid key, 403 without the scope
    limit = push.settings.max_payload_bytes
    body = flask.request.get_data(cache=False)[: limit + 1]
    try:
        status, doc = push.ingest(body, flask.request.content_type,
                                  flask.request.args.get("sensor_id"), f"{TOPIC}/{key.name}")
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        log.warning("event=http_push_db_unavailable key=%s error=%r", key.name,
                    str(exc).strip()[:200])
        return flask.jsonify({"error": "database unavailable: nothing was stored, retry"}), 503
    log.info("event=http_push key=%s status=%d accepted=%d", key.name, status, doc["accepted"])
    return flask.jsonify(doc), status


def install(server: flask.Flask, settings: Settings) -> Push:
    """Register the blueprint on ``server`` (whose guard verifies API keys, dashboards.auth)."""
    push = Push(settings)
    server.extensions["citypulse_ingest_push"] = push
    server.register_blueprint(bp)
    return push
