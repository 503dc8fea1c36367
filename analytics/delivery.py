"""Alert delivery: MQTT ``{prefix}/v1/alerts/{severity}/{zone}`` (QoS 1) and webhooks.

In: the settings (broker URL, topic prefix, webhook URLs and retry policy) and a database
URL for the delivery log.  Out: every :meth:`Delivery.send` publishes the alert's JSON
message (see :meth:`analytics.lifecycle.Alert.message`, plus ``event``: open, escalate,
resolve) on MQTT and POSTs it to each webhook.  Webhooks run on a background thread with
capped exponential backoff; every attempt is visible in ``citypulse.alert_deliveries``
(status pending/ok/retrying/failed, attempts, last_error), in :attr:`Delivery.stats` and in
the logs.  ``send`` never raises and never blocks on the network.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import psycopg
import requests

from analytics.lifecycle import Alert
from citypulse.settings import Settings
from citypulse.wire import topics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Job:
    delivery_id: int | None
    alert_id: int
    url: str
    body: bytes
    attempt: int


class Delivery:
    """Publishes alerts on MQTT and POSTs them to webhooks (with retries)."""

    def __init__(self, settings: Settings, webhook_urls: list[str] | None = None,
                 max_attempts: int | None = None, backoff_s: float | None = None,
                 backoff_cap_s: float | None = None, timeout_s: float | None = None,
                 mqtt_enabled: bool = True) -> None:
        self.settings = settings
        self.prefix = settings.topic_prefix
        self.webhook_urls = list(settings.webhook_urls if webhook_urls is None else webhook_urls)
        self.max_attempts = max_attempts or settings.webhook_max_attempts
        self.backoff_s = backoff_s if backoff_s is not None else settings.webhook_backoff_s
        self.backoff_cap_s = (backoff_cap_s if backoff_cap_s is not None
                              else settings.webhook_backoff_cap_s)
        self.timeout_s = timeout_s or settings.webhook_timeout_s
        self.stats = {"mqtt_published": 0, "mqtt_errors": 0, "webhook_ok": 0,
                      "webhook_retries": 0, "webhook_failed": 0}
        self._heap: list[tuple[float, int, _Job]] = []
        self._seq = itertools.count()
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._db: psycopg.Connection | None = None
        self.client: mqtt.Client | None = None
        self._connected = threading.Event()
        if mqtt_enabled:
            self._mqtt_start()
        if self.webhook_urls:
            self._thread = threading.Thread(target=self._webhook_loop, name="alert-webhooks",
                                            daemon=True)
            self._thread.start()

    # --- MQTT -----------------------------------------------------------------------------
    def _mqtt_start(self) -> None:
        ep = self.settings.mqtt
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                        client_id=f"citypulse-alerts-{uuid.uuid4().hex[:8]}",
                        protocol=mqtt.MQTTv311)
        if ep.username:
            c.username_pw_set(ep.username, ep.password)
        if ep.tls:
            c.tls_set(ca_certs=str(self.settings.mqtt_ca_file) if self.settings.mqtt_ca_file
                      else None)
        c.max_queued_messages_set(10_000)
        c.on_connect = lambda *_a: self._connected.set()
        c.on_disconnect = lambda *_a: self._connected.clear()
        c.on_connect_fail = lambda *_a: log.warning(
            "alerts: broker %s:%s not reachable; retrying (backoff up to 10 s)", ep.host, ep.port)
        c.reconnect_delay_set(0.5, 10)  # paho's loop retries the first connection too
        try:
            c.connect_async(ep.host, ep.port, keepalive=30)
        except (OSError, ValueError) as exc:
            log.error("alerts: cannot reach broker %s: %s", ep, exc)
        c.loop_start()
        self.client = c

    def wait_connected(self, timeout: float = 10.0) -> bool:
        """Wait until the MQTT client is connected."""
        return self._connected.wait(timeout)

    def topic(self, alert: Alert) -> str:
        """The MQTT topic of an alert."""
        return topics.alert(alert.severity, alert.zone_id or "city", self.prefix)

    # --- sending --------------------------------------------------------------------------
    def send(self, alert: Alert, event: str) -> None:
        """Publish and queue webhooks for ``alert`` (``event``: open/escalate/resolve)."""
        body = orjson.dumps({**alert.message(), "event": event}, default=str)
        if self.client is not None:
            try:
                info = self.client.publish(self.topic(alert), body, qos=1)
                if info.rc == mqtt.MQTT_ERR_SUCCESS or info.rc == mqtt.MQTT_ERR_NO_CONN:
                    self.stats["mqtt_published"] += 1  # queued; paho resends on reconnect
                else:
                    self.stats["mqtt_errors"] += 1
                    log.error("alert %s: MQTT publish rc=%s", alert.id, info.rc)
            except (ValueError, OSError) as exc:
                self.stats["mqtt_errors"] += 1
                log.error("alert %s: MQTT publish failed: %s", alert.id, exc)
        for url in self.webhook_urls:
            did = self._log_new(alert.id, url, event)
            self._push(0.0, _Job(did, alert.id, url, body, 0))

    def _push(self, delay: float, job: _Job) -> None:
        with self._cv:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), job))
            self._cv.notify()

    def pending(self) -> int:
        """Webhook jobs not finished yet."""
        with self._cv:
            return len(self._heap)

    # --- webhooks -------------------------------------------------------------------------
    def _webhook_loop(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            with self._cv:
                while not self._stop.is_set() and (
                        not self._heap or self._heap[0][0] > time.monotonic()):
                    wait = (self._heap[0][0] - time.monotonic()) if self._heap else 1.0
                    self._cv.wait(max(0.01, min(wait, 1.0)))
                if self._stop.is_set():
                    return
                _, _, job = heapq.heappop(self._heap)
            self._attempt(session, job)

    def _attempt(self, session: requests.Session, job: _Job) -> None:
        attempt = job.attempt + 1
        error = ""
        try:
            r = session.post(job.url, data=job.body, timeout=self.timeout_s,
                             headers={"Content-Type": "application/json",
                                      "X-Citypulse-Attempt": str(attempt)})
            if r.status_code >= 300:
                error = f"HTTP {r.status_code}"
        except requests.RequestException as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        # the delivery log first, then the counters: whoever reads a counter finds the log
        # already saying so
        if not error:
            self._log_update(job.delivery_id, "ok", attempt, "")
            self.stats["webhook_ok"] += 1
            return
        if attempt >= self.max_attempts:
            log.error("alert %s: webhook %s failed after %d attempts: %s", job.alert_id,
                      job.url, attempt, error)
            self._log_update(job.delivery_id, "failed", attempt, error)
            self.stats["webhook_failed"] += 1
            return
        delay = min(self.backoff_cap_s, self.backoff_s * 2 ** (attempt - 1))
        log.warning("alert %s: webhook %s attempt %d failed (%s); retry in %.1f s",
                    job.alert_id, job.url, attempt, error, delay)
        self._log_update(job.delivery_id, "retrying", attempt, error)
        self.stats["webhook_retries"] += 1
        self._push(delay, _Job(job.delivery_id, job.alert_id, job.url, job.body, attempt))

    def _conn(self) -> psycopg.Connection | None:
        if self._db is None or self._db.closed:
            try:
                self._db = psycopg.connect(self.settings.database_url, autocommit=True)
            except psycopg.Error as exc:
                log.error("alerts: delivery log unavailable: %s", exc)
                return None
        return self._db

    def _log_new(self, alert_id: int, url: str, event: str) -> int | None:
        with self._cv:  # the connection is shared with the webhook thread
            conn = self._conn()
            if conn is None:
                return None
            try:
                row = conn.execute(
                    "INSERT INTO citypulse.alert_deliveries (alert_id, channel, target, event, "
                    "status) VALUES (%s, 'webhook', %s, %s, 'pending') RETURNING id",
                    (alert_id, url, event)).fetchone()
                return row[0] if row else None
            except psycopg.Error as exc:
                log.error("alerts: cannot log delivery: %s", exc)
                return None

    def _log_update(self, did: int | None, status: str, attempts: int, error: str) -> None:
        if did is None:
            return
        with self._cv:
            conn = self._conn()
            if conn is None:
                return
            try:
                conn.execute(
                    "UPDATE citypulse.alert_deliveries SET status = %s, attempts = %s, "
                    "last_error = %s, updated_at = now() WHERE id = %s",
                    (status, attempts, error, did))
            except psycopg.Error as exc:
                log.error("alerts: cannot log delivery: %s", exc)

    def close(self, drain_s: float = 2.0) -> None:
        """Stop: give due webhooks ``drain_s`` to finish, disconnect MQTT."""
        deadline = time.monotonic() + drain_s
        while self.pending() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(5)
        if self.client is not None:
            self.client.loop_stop()
            self.client.disconnect()
        if self._db is not None:
            self._db.close()

    def __enter__(self) -> Delivery:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
