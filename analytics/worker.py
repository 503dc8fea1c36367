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

from analytics.delivery import Delivery
from analytics.engine import Engine
from analytics.rules import load_rules
from citypulse.settings import Settings

log = logging.getLogger(__name__)


def run(settings: Settings, stop: threading.Event, delivery: Delivery | None = None,
        on_tick: object = None) -> dict:
    """Run the worker loop until ``stop`` is set; returns the engine's stats."""
    rules = load_rules(settings.rules_file)
    own_delivery = delivery is None
    delivery = delivery or Delivery(settings)
    engine: Engine | None = None
    conn: psycopg.Connection | None = None
    last_log = time.monotonic()
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
                engine.tick()
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
