"""The alert engine: evaluate the rules on the freshest readings every tick, drive the lifecycle.

In: a psycopg connection (autocommit), a :class:`~analytics.rules.RuleSet`, optionally a
:class:`~analytics.delivery.Delivery`.  Out: alerts opened, refreshed, escalated and
auto-resolved in the store (and delivered).  Call :meth:`Engine.tick` every 1-2 s (the
``citypulse alerts run`` worker does); ``now`` may be given (tests, replay).

Each tick reads the raw readings that arrived since the previous tick (``citypulse.raw`` by
time, with a lateness margin) into polars, keeps the latest reading per sensor, and
evaluates every rule to two sets per rule: entities where the condition is ON (with
evidence), and entities where the CLEAR condition holds.  Timers turn these into alerts: an
entity ON for ``for_s`` opens an alert (one per rule and entity); an open alert whose entity
is CLEAR for ``clear_for_s`` auto-resolves.  ON and CLEAR use separate levels (hysteresis),
so values oscillating around a threshold neither flap nor re-open.  Grouping: a finding's
``scope`` lists members; members' own open alerts are resolved into it ("regroup"); more
than ``collapse_above`` entities at once become one city-wide alert.  Supersession (a rule's
``supersedes``): one open alert per incident -- a higher alert covering a lower rule's alert
for the same place resolves it ("supersede") and keeps its history, and the lower rule does
not open for covered places while the higher alert is open.

The parts: :mod:`analytics.window` (registry and readings), :mod:`analytics.evaluators`
(one module per rule family, registered by rule type in :mod:`analytics.findings`),
:mod:`analytics.grouping`, :mod:`analytics.supersede`, :mod:`analytics.places` (the city);
this module is the loop window -> evaluate -> lifecycle.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import polars as pl
import psycopg

import analytics.evaluators  # noqa: F401 - registers the built-in rule evaluators
from analytics import lifecycle
from analytics.findings import CITY, EVALUATORS, Evaluation, Finding
from analytics.grouping import collapse
from analytics.places import CityModel
from analytics.rules import RuleSet
from analytics.supersede import Supersession, covers
from analytics.window import Window

log = logging.getLogger(__name__)

__all__ = ["CITY", "CityModel", "Engine", "Evaluation", "Finding", "covers"]


def _zone_topic_id(z: Any) -> str:
    s = str(z) if z else CITY
    return "".join("_" if c in "+#/\x00" else c for c in s)[:128] or CITY


class Engine:
    """Evaluates the rules every tick and keeps the alerts in the store in step."""

    def __init__(self, conn: psycopg.Connection, rules: RuleSet, delivery: Any = None,
                 city: CityModel | None = None, lateness_s: float = 3.0,
                 meta_refresh_s: float = 60.0) -> None:
        self.conn = conn
        self.rules = rules
        self.delivery = delivery
        self.city = city if city is not None else CityModel()
        self._follow = city is None  # an engine given a city keeps it (benchmarks, tests)
        rate_rules = rules.of_type("rate_of_change")
        history_ms_of = {k: int(max(r.over_s for r in rate_rules if r.kind == k) * 1000)
                         + 30_000 for k in {r.kind for r in rate_rules}}
        self.window = Window(self.city, history_ms_of, int(lateness_s * 1000), meta_refresh_s)
        self.supersession = Supersession(rules, self.city)
        self.cache: dict[str, Any] = {}  # evaluators' own state (e.g. anomaly baselines)
        self.started_ms: int | None = None
        self.on_since: dict[tuple[str, str, str], int] = {}
        self.off_since: dict[tuple[str, str, str], int] = {}
        self._last_update: dict[int, int] = {}
        self._was_open: dict[str, set[tuple[str, str]]] = {}
        self._hold_until: dict[tuple[str, str, str], int] = {}
        self._last_escalation_check = 0
        self._open: dict[tuple[str, str, str], dict] = {}
        self._places: dict[tuple, tuple] = {}  # collapsed alerts' places by member set
        self.stats = {"ticks": 0, "rows": 0, "opened": 0, "resolved": 0, "escalated": 0,
                      "tick_ms": 0.0}

    # --- the tick ---------------------------------------------------------------------------
    def tick(self, now: datetime | None = None) -> dict:
        """One evaluation round; returns what happened (counts)."""
        t0 = time.perf_counter()
        now = now or datetime.now(UTC)
        now_ms = int(now.timestamp() * 1000)
        if self.started_ms is None:
            self.started_ms = now_ms
        w = self.window
        if w.meta_due():
            self._follow_city()
        w.refresh_meta(self.conn)
        rows = w.ingest(self.conn, now_ms) + w.catch_up_silent(self.conn, now_ms)
        if w.late_rows:
            self.stats["late_rows"] = w.late_rows
        cur = w.current(now_ms)
        open_alerts = self._open = self._open_alerts()
        done = {"rows": rows, "opened": 0, "resolved": 0, "escalated": 0}
        for rule in self.rules.active():
            open_keys = {(k, e): a for (r, k, e), a in open_alerts.items() if r == rule.id}
            try:
                ev = self.evaluate(rule, cur, now_ms, set(open_keys))
            except Exception:  # a broken rule must not stop the others
                log.exception("rule %s failed", rule.id)
                continue
            ev = collapse(rule, ev, open_keys, self.city, self._places)
            o, r = self._apply(rule, ev, open_keys, now, now_ms)
            done["opened"] += o
            done["resolved"] += r
        done["resolved"] += self._supersede(now)
        if now_ms - self._last_escalation_check >= 5000:
            self._last_escalation_check = now_ms
            done["escalated"] = self.escalate_due(now)
        self.stats["ticks"] += 1
        for k in ("rows", "opened", "resolved", "escalated"):
            self.stats[k] += done[k]
        self.stats["tick_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        return done

    def _follow_city(self) -> None:
        """Switch to the active city model when it changed (``citypulse city use``)."""
        from citypulse.city.store import active_key, model_key

        if not self._follow:
            return
        name, version, _ = active_key(self.conn)
        if f"{name}@{version}" != self.city.key:
            from citypulse.city.store import active

            self.city = CityModel(active(self.conn))
            self.window.city = self.supersession.city = self.city
            self.window.meta = None  # placement is per city: reload the registry
            log.info("alerts engine on city %s", model_key(self.city.model))

    def evaluate(self, rule: Any, cur: pl.DataFrame, now_ms: int,
                 open_keys: set[tuple[str, str]]) -> Evaluation:
        """Evaluate one rule on the current state (by its type's registered evaluator)."""
        fn = EVALUATORS.get(rule.type)
        return fn(rule, cur, now_ms, open_keys, self) if fn is not None else Evaluation()

    def _open_alerts(self) -> dict[tuple[str, str, str], dict]:
        rows = self.conn.execute(
            "SELECT id, rule, entity_kind, entity_id, status, scope, started_at "
            "FROM citypulse.alerts WHERE status <> 'resolved'").fetchall()
        return {(r[1], r[2], r[3]): {"id": r[0], "status": r[4], "scope": r[5],
                                     "started_at": r[6]} for r in rows}

    # --- lifecycle ----------------------------------------------------------------------------
    def _apply(self, rule: Any, ev: Evaluation, open_keys: dict, now: datetime, now_ms: int
               ) -> tuple[int, int]:
        opened = resolved = 0
        rid = rule.id
        for key in [k for k in self.on_since if k[0] == rid and (k[1], k[2]) not in ev.on]:
            del self.on_since[key]
        # an alert resolved by a person while its condition still holds: it may come back,
        # but only after the condition held again for max(for_s, clear_for_s)
        for kind, ent in self._was_open.get(rid, set()) - set(open_keys):
            if (kind, ent) in ev.on:
                self._hold_until[(rid, kind, ent)] = now_ms + int(
                    max(rule.for_s, rule.clear_for_s) * 1000)
        self._was_open[rid] = set(open_keys)
        covered: dict[str, int] = {}
        for (kind, ent), f in ev.on.items():
            tkey = (rid, kind, ent)
            since = self.on_since.setdefault(tkey, min(f.since_ms, now_ms))
            self.off_since.pop(tkey, None)
            existing = open_keys.get((kind, ent))
            if existing is None and (now_ms < self._hold_until.get(tkey, 0)
                                     or self.supersession.superseding(self._open, rid, kind, ent) is not None):
                continue  # held back after a manual resolve, or a higher alert covers it
            if existing is None and now_ms - since >= rule.for_s * 1000:
                self._hold_until.pop(tkey, None)
                started, evidence = self.supersession.history(self._open, rid, kind, ent, f, since)
                alert = lifecycle.open_alert(self.conn, lifecycle.NewAlert(
                    rule=rid, entity_kind=kind, entity_id=ent, severity=rule.severity,
                    title=_title(rule, kind, ent), started_at=started,
                    zone_id=_zone_topic_id(f.zone_id), lon=f.lon, lat=f.lat,
                    geometry=f.geometry, scope=f.scope, evidence=evidence), now=now)
                if alert is not None:
                    opened += 1
                    self._open[(rid, kind, ent)] = {"id": alert.id, "status": alert.status,
                                                    "scope": alert.scope,
                                                    "started_at": alert.started_at}
                    self._was_open[rid].add((kind, ent))
                    self._last_update[alert.id] = now_ms
                    self._deliver(alert, "open")
                    if f.scope:
                        covered.update({m: alert.id for m in f.scope})
            elif existing is not None:
                if f.scope:
                    covered.update({m: existing["id"] for m in f.scope})
                last = self._last_update.get(existing["id"], 0)
                if now_ms - last >= self.rules.update_every_s * 1000:
                    self._last_update[existing["id"]] = now_ms
                    lifecycle.update_alert(self.conn, existing["id"], evidence=f.evidence,
                                           scope=list(f.scope) if f.scope else None, now=now,
                                           place=(f.lon, f.lat, f.geometry))
        for (kind, ent), a in open_keys.items():
            tkey = (rid, kind, ent)
            member = covered.get(ent) or covered.get(f"{kind}:{ent}")
            if member and member != a["id"]:
                if self._resolve(a["id"], "regroup", f"grouped into alert {member}", now):
                    resolved += 1
                    self._was_open[rid].discard((kind, ent))
                continue
            if (kind, ent) in ev.on:
                continue
            if (kind, ent) in ev.clear:
                since = self.off_since.setdefault(tkey, now_ms)
                if now_ms - since >= rule.clear_for_s * 1000:
                    self.off_since.pop(tkey, None)
                    if self._resolve(a["id"], "auto_resolve", "condition cleared", now):
                        resolved += 1
                        self._was_open[rid].discard((kind, ent))
            else:
                self.off_since.pop(tkey, None)
        return opened, resolved

    def _supersede(self, now: datetime) -> int:
        """Resolve open alerts covered by an open alert of a rule that supersedes theirs."""
        if not self.supersession.supersedes:
            return 0
        resolved = 0
        for (lr, lk, le), a, h, hr in list(self.supersession.covered(self._open_alerts())):
            if self._resolve(a["id"], "supersede", f"superseded by alert {h['id']} ({hr})", now):
                resolved += 1
                self._was_open.get(lr, set()).discard((lk, le))
        return resolved

    def _resolve(self, alert_id: int, action: str, note: str, now: datetime) -> bool:
        try:
            alert = lifecycle.resolve(self.conn, alert_id, lifecycle.SYSTEM, note, now=now,
                                      action=action)
        except lifecycle.AlertError:
            return False  # resolved meanwhile by a person
        self._deliver(alert, "resolve")
        return True

    def escalate_due(self, now: datetime | None = None) -> int:
        """Escalate open critical alerts unacknowledged for ``escalate_after_s``."""
        n = 0
        for aid in lifecycle.due_for_escalation(self.conn, self.rules.escalate_after_s, now):
            try:
                alert = lifecycle.escalate(
                    self.conn, aid, lifecycle.SYSTEM,
                    f"unacknowledged for {self.rules.escalate_after_s:.0f} s", now=now)
            except lifecycle.AlertError:
                continue
            n += 1
            self._deliver(alert, "escalate")
        return n

    def _deliver(self, alert: lifecycle.Alert, event: str) -> None:
        if self.delivery is None:
            return
        try:
            self.delivery.send(alert, event)
        except Exception:  # delivery problems are recorded there; never stop the engine
            log.exception("delivery of alert %s failed", alert.id)


def _title(rule: Any, kind: str, ent: str) -> str:
    if kind == CITY:
        return f"{rule.label} (city-wide)"
    return f"{rule.label}: {kind} {ent}"
