"""The alerts worker behind ``citypulse alerts run``: evaluate every ``alerts_tick_s``.

In: the settings (database, broker, prefix, rules file, webhooks).  Out: runs until ``stop``
is set (SIGTERM/SIGINT in the command), evaluating the rules on the freshest readings each
tick and delivering alerts; reconnects to the database after an outage.  Never raises for
a bad tick: it logs and carries on.
"""

from __future__ import annotations

import logging
import threading
import time

import psycopg

from analytics import upkeep
from analytics.delivery import Delivery
from analytics.engine import Engine
from analytics.rules import load_rules
from citypulse.settings import Settings

log = logging.getLogger(__name__)

UPKEEP_EVERY_S = 60.0  # maintenance tickets (analytics.upkeep) are brought in step this often


class Metrics:
    """Prometheus metrics of the worker (own registry), served on ``port`` when given."""

    def __init__(self, port: int | None = None) -> None:
        from prometheus_client import CollectorRegistry, Gauge, Histogram, start_http_server

        self.registry = CollectorRegistry()
        self.tick = Histogram("citypulse_alerts_tick_seconds", "Alert evaluation tick time",
                              registry=self.registry,
                              buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5))
        self.counts = Gauge("citypulse_alerts_total", "Alert engine and delivery counters",
                            ["what"], registry=self.registry)
        self.open = Gauge("citypulse_alerts_open", "Unresolved alerts by severity",
                          ["severity"], registry=self.registry)
        if port is not None:
            start_http_server(port, addr="127.0.0.1", registry=self.registry)

    def update(self, engine: Engine, delivery: Delivery, tick_s: float) -> None:
        """Record one tick."""
        self.tick.observe(tick_s)
        for k in ("opened", "resolved", "escalated", "rows"):
            self.counts.labels(k).set(engine.stats[k])
        for k, v in delivery.stats.items():
            self.counts.labels(k).set(v)


def run(settings: Settings, stop: threading.Event, delivery: Delivery | None = None,
        on_tick: object = None, metrics_port: int | None = None) -> dict:
    """Run the worker loop until ``stop`` is set; returns the engine's stats."""
    rules = load_rules(settings.rules_file)
    metrics = Metrics(metrics_port)
    own_delivery = delivery is None
    delivery = delivery or Delivery(settings)
    engine: Engine | None = None
    conn: psycopg.Connection | None = None
    last_log = time.monotonic()
    last_upkeep = 0.0
    try:
        while not stop.is_set():
            started = time.monotonic()
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(settings.database_url, autocommit=True)
                    if engine is None:
                        engine = Engine(conn, rules, delivery)
                    else:
                        engine.conn = conn
                t0 = time.monotonic()
                engine.tick()
                metrics.update(engine, delivery, time.monotonic() - t0)
                if int(t0) % 10 == 0:
                    for sev, n in conn.execute(
                            "SELECT severity, count(*) FROM citypulse.alerts "
                            "WHERE status <> 'resolved' GROUP BY 1").fetchall():
                        metrics.open.labels(sev).set(n)
                if time.monotonic() - last_upkeep >= UPKEEP_EVERY_S:
                    last_upkeep = time.monotonic()
                    log.debug("alerts: upkeep %s", upkeep.run(conn))
                if callable(on_tick):
                    on_tick(engine)
            except psycopg.OperationalError as exc:
                log.warning("alerts: database unavailable (%s); retrying", exc)
                if conn is not None:
                    conn.close()
                conn = None
            except Exception:  # a bad tick must not stop the worker
                log.exception("alerts: tick failed")
            if engine is not None and time.monotonic() - last_log > 30:
                last_log = time.monotonic()
                log.info("alerts: %s; delivery %s", engine.stats, delivery.stats)
            stop.wait(max(0.0, settings.alerts_tick_s - (time.monotonic() - started)))
    finally:
        if own_delivery:
            delivery.close()
        if conn is not None:
            conn.close()
    return engine.stats if engine else {}
