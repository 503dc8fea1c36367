"""The commands worker (``citypulse commands run``): sends what is queued, tracks answers.

In: the store (``citypulse.commands``, written by :mod:`control.api`) and the broker.
Out: commands sent on ``{prefix}/v1/commands/{device}`` (QoS 1, never retained, MQTT 5
response topic + correlation data), their status moved along ``queued -> sent ->
delivered -> succeeded | failed`` from the devices' answers, ``expired`` past their expiry,
re-sent (same id: the device deduplicates) when unanswered for ``commands_retry_after_s``
until the retry budget is spent, and every audit event published on
``{prefix}/v1/commands/events``.  ``set_interval`` goes through the device shadow.
A device that came through a configured source adapter (a ``citypulse.source_devices`` row)
is commanded on that source's downlink instead (:mod:`control.downlinks`: ThingsBoard
gateway RPC, ChirpStack and The Things Stack downlink queues), and the source's answers move
the command on.

Restart-safe: every decision is persisted before the message goes out, and on start (and
on every reconnect to the broker) the worker re-sends what is ``sent``/``delivered`` -- a
command is never left in ``sent``.  The first connections are retried with capped backoff and
logged: the database's here (up to 10 s between attempts), the broker's by
:class:`~citypulse.wire.session.Session`.  Fleet commands are sent at their rate limit and aborted
(the rest cancelled) once more than their ``abort_pct`` of devices failed.  One worker per
database.  ``Worker(settings).run(stop_event)`` runs until the event is set.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from citypulse.actuators import method
from citypulse.settings import Settings
from citypulse.wire import topics
from citypulse.wire.session import Session
from control import downlinks, records

log = logging.getLogger(__name__)
SEND_BATCH = 500
IN_FLIGHT_ORDER = ("sent", "delivered")
DB_BACKOFF_CAP_S = 10.0


def _first_db_connection(url: str, stop: threading.Event) -> psycopg.Connection:
    """Connect to the database, retrying with capped backoff (logged) until it answers."""
    delay = 0.5
    while True:
        try:
            return psycopg.connect(url, autocommit=True)
        except psycopg.OperationalError as exc:
            if stop.is_set():
                raise
            log.warning("commands: database not reachable (%s); retrying in %.1f s",
                        str(exc).strip().splitlines()[0] if str(exc).strip() else exc, delay)
            stop.wait(delay)
            delay = min(delay * 2, DB_BACKOFF_CAP_S)


class Worker:
    """See the module doc."""

    def __init__(self, settings: Settings, client_id: str | None = None,
                 stop: threading.Event | None = None) -> None:
        self.s = settings
        self.prefix = settings.topic_prefix
        self.q: queue.Queue = queue.Queue()
        self.stop = stop or threading.Event()  # set while connecting: gives up (raises)
        self.conn = _first_db_connection(settings.database_url, self.stop)
        self.resend_due = True  # on start: whatever is in flight goes out again
        self.next_at: dict[UUID, float] = {}  # fleet -> earliest next send (rate limit)
        row = self.conn.execute("SELECT coalesce(max(id), 0) FROM citypulse.command_events")
        self.last_event = row.fetchone()[0]
        self._last_periodic = 0.0
        self._answers: list[tuple] = []
        self.stats = {"sent": 0, "resent": 0, "answers": 0, "events": 0}
        names = {d.name for d in downlinks.available()}
        self.downlinks = [downlinks.get(n) for n in settings.sources if n in names]
        self.link = Session(settings.mqtt_url, client_id or f"citypulse-commands-{self.prefix}",
                            topics.command_subscriptions(self.prefix)
                            + [t for d in self.downlinks for t in d.subscriptions()],
                            lambda t, p, props: self.q.put(("msg", t, p)),
                            ca_file=settings.mqtt_ca_file,
                            on_connect=lambda: self.q.put(("connected",)))
        self._listener = threading.Thread(target=self._listen, name="commands-listen",
                                          daemon=True)
        self._listener.start()

    # --- loop -------------------------------------------------------------------------------
    def _listen(self) -> None:
        """Turn NOTIFY citypulse_commands into wake-ups of the main loop."""
        try:
            with psycopg.connect(self.s.database_url, autocommit=True) as c:
                c.execute(f"LISTEN {records.CHANNEL}")
                while not self.stop.is_set():
                    for _n in c.notifies(timeout=1.0, stop_after=1):
                        self.q.put(("notify",))
        except psycopg.Error as exc:
            log.warning("commands: LISTEN connection lost (%s); polling every tick", exc)

    def run(self, stop: threading.Event | None = None) -> None:
        """Work until ``stop`` (or :attr:`stop`) is set."""
        stop = stop or self.stop
        self.link.wait_connected(10)
        try:
            while not stop.is_set():
                try:
                    items = [self.q.get(timeout=self.s.commands_tick_s)]
                    while True:
                        items.append(self.q.get_nowait())
                except queue.Empty:
                    pass
                try:
                    for item in items:
                        self._handle(item)
                    self.flush_answers()
                    self.tick(woken=any(i[0] != "msg" for i in items), busy=bool(items))
                except psycopg.OperationalError as exc:
                    log.warning("commands: database unavailable (%s); retrying", exc)
                    time.sleep(1)
                    self._reconnect_db()
                except psycopg.Error:  # a bug or a bad row must not stop the worker
                    log.exception("commands: a pass failed; continuing")
        finally:
            self.stop.set()
            self.link.close()
            self.conn.close()

    def _reconnect_db(self) -> None:
        try:
            self.conn.close()
            self.conn = psycopg.connect(self.s.database_url, autocommit=True)
        except psycopg.OperationalError:
            pass

    def _handle(self, item: tuple) -> None:
        if item[0] == "connected":
            self.resend_due = True
        elif item[0] == "msg":
            try:
                self.on_message(item[1], item[2])
            except (ValueError, KeyError, TypeError, psycopg.DataError) as exc:
                log.warning("commands: bad message on %s: %s", item[1], exc)

    def tick(self, woken: bool = True, busy: bool = True) -> None:
        """One pass: send queued (when woken), publish new events.

        Every ``commands_tick_s`` also expire, retry, re-send after a reconnect, watch fleets.
        """
        now = time.monotonic()
        periodic = now - self._last_periodic >= self.s.commands_tick_s
        if periodic:
            self._last_periodic = now
            self.expire()
            self.retry()
            if self.resend_due and self.link.connected.is_set():
                self.resend_due = False
                self.resend_in_flight("reconnect")
        if woken or periodic:
            self.send_queued()
        if periodic:
            self.check_fleets()
        if busy or periodic:
            self.publish_events()

    # --- sending ----------------------------------------------------------------------------
    def _publish_all(self, recs: list[dict]) -> list[dict]:
        """Send ``recs`` (each on its device's route); the ones that went out."""
        routes = downlinks.routes(self.conn, [r["device_id"] for r in recs], self.downlinks)
        out = []
        for rec in recs:
            route = routes.get(rec["device_id"])
            if route is None:
                self._publish(rec)
                out.append(rec)
                continue
            try:
                topic, body = downlinks.get(route.source).request(rec, route)
            except ValueError as exc:
                records.transition(self.conn, rec["id"], "failed", records.IN_FLIGHT, "worker",
                                   "downlink", reason=str(exc))
                continue
            self.link.publish(topic, body, retain=False)
            out.append(rec)
        return out

    def _publish(self, rec: dict) -> None:
        m = method(rec["kind"], rec["method"])
        dev = rec["device_id"]
        if m.shadow:
            row = self.conn.execute(
                "SELECT desired_version, desired FROM citypulse.device_shadows "
                "WHERE device_id = %s", (dev,)).fetchone()
            body = {"version": row[0], "state": row[1]}
            self.link.publish(topics.shadow_desired(dev, self.prefix), orjson.dumps(body),
                              retain=True)  # state, not a command: the latest desired wins
            return
        body = {"id": str(rec["id"]), "method": rec["method"], "params": rec["params"],
                "expires": int(rec["expires_at"].timestamp() * 1000)}
        self.link.publish(topics.command(dev, self.prefix), orjson.dumps(body), retain=False,
                          response_topic=topics.command_response(dev, self.prefix),
                          correlation=rec["id"].bytes)

    def send_queued(self) -> None:
        """Send queued commands: per-device order, fleets at their rate."""
        if not self.link.connected.is_set():
            return
        with self.conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                "SELECT c.*, EXISTS (SELECT 1 FROM citypulse.commands o WHERE o.device_id = "
                "c.device_id AND o.seq < c.seq AND o.status IN ('queued', 'sent', 'delivered'))"
                " AS blocked FROM citypulse.commands c WHERE c.status = 'queued' "
                "AND c.expires_at > now() ORDER BY c.seq LIMIT %s", (SEND_BATCH,)).fetchall()
        rates: dict[UUID, float] = {}
        batch: list[UUID] = []
        for rec in rows:
            m = method(rec["kind"], rec["method"])
            if rec["blocked"] and m.sequential:
                continue
            fid = rec["fleet_id"]
            if fid is not None:
                if fid not in rates:
                    rates[fid] = self._fleet_rate(fid)
                now = time.monotonic()
                due = self.next_at.get(fid, now)
                if due > now:
                    continue
                self.next_at[fid] = max(due, now - 1.0) + 1.0 / rates[fid]
            if m.shadow:  # desired state first, then the command that waits for it
                got = records.transition(
                    self.conn, rec["id"], "sent", ("queued",), "worker", "send",
                    extra={"attempts": rec["attempts"] + 1, "sent_at": datetime.now(UTC),
                           "shadow_version": self._write_desired(rec)})
                if got is not None:
                    self.stats["sent"] += len(self._publish_all([got]))
            else:
                batch.append(rec["id"])
        self.stats["sent"] += len(self._publish_all(records.mark_sent(self.conn, batch, "worker")))

    def _fleet_rate(self, fid: UUID) -> float:
        row = self.conn.execute("SELECT rate_per_s FROM citypulse.command_fleets WHERE id = %s",
                                (fid,)).fetchone()
        return float(row[0]) if row else self.s.commands_fleet_rate

    def _write_desired(self, rec: dict) -> int:
        return self.conn.execute(
            "INSERT INTO citypulse.device_shadows AS d (device_id, desired, desired_version, "
            "desired_at) VALUES (%s, %s, 1, now()) ON CONFLICT (device_id) DO UPDATE SET "
            "desired = d.desired || EXCLUDED.desired, desired_version = d.desired_version + 1, "
            "desired_at = now() RETURNING desired_version",
            (rec["device_id"], Jsonb(rec["params"]))).fetchone()[0]

    def resend_in_flight(self, why: str) -> None:
        """Send every sent/delivered command again (same id): after a restart or reconnect."""
        now = datetime.now(UTC)
        for rec in self._publish_all([r for st in IN_FLIGHT_ORDER for r in records.listing(
                self.conn, limit=100_000, status=st) if r["expires_at"] > now]):
            self.stats["resent"] += 1
            records.event(self.conn, rec["id"], "resend", "worker", rec["status"],
                          rec["alert_id"], rec["fleet_id"], {"why": why})

    def retry(self) -> None:
        """Re-send unanswered commands; fail them once the retry budget is spent."""
        with self.conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                "SELECT * FROM citypulse.commands WHERE status IN ('sent', 'delivered') "
                "AND updated_at < now() - make_interval(secs => %s) AND expires_at > now()",
                (self.s.commands_retry_after_s,)).fetchall()
        for rec in rows:
            if rec["attempts"] >= rec["max_attempts"]:
                records.transition(self.conn, rec["id"], "failed", (rec["status"],), "worker",
                                   "give_up", reason=f"no answer after {rec['attempts']} sends")
                continue
            got = records.transition(self.conn, rec["id"], rec["status"], (rec["status"],),
                                     "worker", "resend", extra={"attempts": rec["attempts"] + 1})
            if got is not None:
                self.stats["resent"] += len(self._publish_all([got]))

    def expire(self) -> None:
        """Commands past their expiry without an outcome are ``expired``."""
        ids = self.conn.execute(
            "SELECT id FROM citypulse.commands WHERE status = ANY(%s) AND expires_at <= now()",
            (list(records.ACTIVE),)).fetchall()
        for (cid,) in ids:
            records.transition(self.conn, cid, "expired", records.ACTIVE, "worker", "expire",
                               reason="no outcome before the command's expiry")

    # --- answers ----------------------------------------------------------------------------
    def on_message(self, topic: str, payload: bytes) -> None:
        """A device's answer or reported shadow (anything malformed is logged, not raised)."""
        for d in self.downlinks:
            if d.claims(topic):
                for a in d.answers(topic, payload):
                    self.on_downlink_answer(d.name, a)
                return
        t = topics.parse(topic, self.prefix)
        body = orjson.loads(payload)
        if not isinstance(body, dict):
            raise ValueError("payload is not a JSON object")
        self.stats["answers"] += 1
        if t.kind == topics.SHADOW_REPORTED:
            self.on_reported(t.ident, body)
            return
        if t.kind != topics.COMMAND_RESPONSE:
            return
        cid = UUID(str(body["id"]))
        status = body.get("status")
        result = body.get("result") if isinstance(body.get("result"), dict) else {}
        if status not in records.ANSWERS:
            raise ValueError(f"unknown answer status {status!r}")
        reason = ""
        if status == "error":
            reason = str(body.get("error") or result.get("error") or "device reported an error")
        self._answers.append((cid, t.ident, status, result, reason[:500]))

    def on_downlink_answer(self, source: str, a: downlinks.Answer) -> None:
        """Queue a source's answer, once it names a command sent to that source's device."""
        got = downlinks.command_of(self.conn, source, a)
        if got is None:
            log.info("commands: %s answer for %s=%s from %r names no command of that device",
                     source, a.key, a.value, a.device)
            return
        self.stats["answers"] += 1
        self._answers.append((*got, a.status, a.result, a.reason))

    def flush_answers(self) -> None:
        """Apply the answers received since the last flush (batched: one statement per step)."""
        answers, self._answers = self._answers, []
        if answers:
            n = records.apply_answers(self.conn, answers)
            if n < len(answers):
                log.info("commands: %d of %d answers changed nothing (re-deliveries, answers "
                         "for settled or foreign commands)", len(answers) - n, len(answers))

    def on_reported(self, device_id: str, body: dict) -> None:
        """Store a reported shadow; settle the shadow commands it answers."""
        version = int(body.get("version", 0))
        state = body.get("state") if isinstance(body.get("state"), dict) else {}
        self.conn.execute(
            "INSERT INTO citypulse.device_shadows AS d (device_id, reported, reported_version, "
            "reported_at) VALUES (%s, %s, %s, now()) ON CONFLICT (device_id) DO UPDATE SET "
            "reported = EXCLUDED.reported, reported_version = EXCLUDED.reported_version, "
            "reported_at = now()", (device_id, Jsonb(state), version))
        with self.conn.cursor(row_factory=dict_row) as cur:
            pending = cur.execute(
                "SELECT * FROM citypulse.commands WHERE device_id = %s AND status IN "
                "('sent', 'delivered') AND shadow_version <= %s", (device_id, version)).fetchall()
        for rec in pending:
            differs = {k: state.get(k) for k, v in rec["params"].items() if state.get(k) != v}
            if differs:
                records.transition(self.conn, rec["id"], "failed", records.IN_FLIGHT,
                                   device_id, "reported", result=state,
                                   reason=f"device reports {differs} at version {version}")
            else:
                records.transition(self.conn, rec["id"], "succeeded", records.IN_FLIGHT,
                                   device_id, "reported", result=state)

    # --- fleets and events ------------------------------------------------------------------
    def check_fleets(self) -> None:
        """Abort fleets past their failure threshold; close finished ones."""
        rows = self.conn.execute(
            "SELECT f.id, f.devices, f.abort_pct, "
            "count(*) FILTER (WHERE c.status IN ('failed', 'expired')), "
            "count(*) FILTER (WHERE c.status IN ('pending_approval', 'queued', 'sent', "
            "'delivered')) FROM citypulse.command_fleets f JOIN citypulse.commands c "
            "ON c.fleet_id = f.id WHERE f.status = 'running' GROUP BY f.id").fetchall()
        for fid, devices, abort_pct, failed, active in rows:
            if failed * 100.0 > abort_pct * devices:
                why = f"fleet aborted: {failed} of {devices} failed (> {abort_pct:g} %)"
                for (cid,) in self.conn.execute(
                        "SELECT id FROM citypulse.commands WHERE fleet_id = %s AND status IN "
                        "('pending_approval', 'queued')", (fid,)).fetchall():
                    records.transition(self.conn, cid, "cancelled",
                                       ("pending_approval", "queued"), "worker", "abort",
                                       reason=why)
                self._close_fleet(fid, "aborted", why)
            elif active == 0:
                self._close_fleet(fid, "done", "")

    def _close_fleet(self, fid: UUID, status: str, why: str) -> None:
        with self.conn.transaction():
            done = self.conn.execute(
                "UPDATE citypulse.command_fleets SET status = %s, finished_at = now() "
                "WHERE id = %s AND status = 'running' RETURNING alert_id", (status, fid)
            ).fetchone()
            if done:
                records.event(self.conn, None, f"fleet_{status}", "worker", status, done[0], fid,
                              {"reason": why} if why else {})
        self.next_at.pop(fid, None)

    def publish_events(self) -> None:
        """Publish new audit events on ``{prefix}/v1/commands/events``."""
        with self.conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                "SELECT e.id, e.command_id, e.fleet_id, e.alert_id, e.at, e.action, e.status, "
                "e.by, e.detail, c.device_id, c.method FROM citypulse.command_events e "
                "LEFT JOIN citypulse.commands c ON c.id = e.command_id WHERE e.id > %s "
                "ORDER BY e.id LIMIT 5000", (self.last_event,)).fetchall()
        topic = topics.command_events(self.prefix)
        for r in rows:
            self.last_event = r.pop("id")
            self.link.publish(topic, orjson.dumps(records.jsonable(r)))
        self.stats["events"] += len(rows)


def run(settings: Settings, stop: threading.Event | None = None) -> dict[str, Any]:
    """Run a worker until ``stop``; returns its counters."""
    w = Worker(settings)
    w.run(stop)
    return w.stats
