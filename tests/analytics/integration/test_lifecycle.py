"""Acknowledge, escalate and resolve are persisted with the audit trail; CLI commands."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from typer.testing import CliRunner

import analytics
from analytics import lifecycle
from analytics.engine import Engine
from analytics.rules import load_rules
from citypulse.cli import app


def _fire(db, feed, city_model):
    feed.sensor("fir-1", "fire", zone_id="Z2-01")
    eng = Engine(db, load_rules(), city=city_model)
    feed.write(0, {"fir-1": {"smoke_pct": 20, "temperature_c": 80, "alarm": 1}})
    eng.tick(feed.at(1))
    (alert,) = analytics.list_alerts(db)
    return eng, alert


def test_escalate_ack_resolve_audit_trail(db, feed, city_model):
    eng, alert = _fire(db, feed, city_model)
    # not yet due
    assert eng.escalate_due(feed.at(60)) == 0
    # unacknowledged critical for escalate_after_s (300 s) -> escalated once
    assert eng.escalate_due(feed.at(1) + timedelta(seconds=301)) == 1
    assert eng.escalate_due(feed.at(1) + timedelta(seconds=400)) == 0
    a = analytics.get_alert(db, alert.id)
    assert a.escalation_level == 1 and a.escalated_at is not None and a.status == "open"
    a = analytics.acknowledge(db, alert.id, by="ana", note="crew on the way")
    assert (a.status, a.acknowledged_by) == ("acknowledged", "ana")
    with pytest.raises(analytics.AlertError):
        analytics.acknowledge(db, alert.id, by="ana")
    a = analytics.resolve(db, alert.id, by="bo", note="false alarm: toaster")
    assert (a.status, a.resolved_by) == ("resolved", "bo") and a.resolved_at is not None
    trail = [(e["action"], e["by"], e["note"]) for e in analytics.events(db, alert.id)]
    assert trail == [("open", "citypulse", ""),
                     ("escalate", "citypulse", "unacknowledged for 300 s"),
                     ("acknowledge", "ana", "crew on the way"),
                     ("resolve", "bo", "false alarm: toaster")]
    with pytest.raises(analytics.AlertError, match="resolved"):
        analytics.escalate(db, alert.id, by="ana")
    # after a calm reading, a new alarm on the same detector is a new alert
    feed.write(400, {"fir-1": {"smoke_pct": 0, "temperature_c": 20, "alarm": 0}})
    eng.tick(feed.at(401))
    feed.write(410, {"fir-1": {"smoke_pct": 20, "temperature_c": 80, "alarm": 1}})
    eng.tick(feed.at(411))
    assert len(analytics.list_alerts(db, open_only=False)) == 2


def test_acknowledged_alert_is_not_escalated_and_still_auto_resolves(db, feed, city_model):
    eng, alert = _fire(db, feed, city_model)
    analytics.acknowledge(db, alert.id, by="ana")
    assert eng.escalate_due(feed.at(1000)) == 0
    for s in range(10, 100, 10):
        feed.write(s, {"fir-1": {"smoke_pct": 0, "temperature_c": 20, "alarm": 0}})
        eng.tick(feed.at(s + 1))
    assert lifecycle.get_alert(db, alert.id).status == "resolved"


def test_evidence_returns_readings_behind_the_alert(db, feed, city_model):
    _, alert = _fire(db, feed, city_model)
    ev = analytics.evidence(db, alert.id)
    assert ev["sensors"] == ["fir-1"]
    assert {(r["metric"], r["value"]) for r in ev["readings"]} >= {("alarm", 1.0)}
    assert ev["trail"][0]["action"] == "open"


def test_cli_list_ack_resolve(db, db_url, feed, city_model):
    _, alert = _fire(db, feed, city_model)
    run = CliRunner().invoke
    r = run(app, ["alerts", "list", "--open", "--json", "--database-url", db_url])
    assert r.exit_code == 0, r.output
    assert [a["id"] for a in json.loads(r.output)] == [alert.id]
    r = run(app, ["alerts", "ack", str(alert.id), "--by", "cy", "--note", "seen",
                  "--database-url", db_url])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["status"] == "acknowledged"
    r = run(app, ["alerts", "escalate", str(alert.id), "--by", "cy", "--database-url", db_url])
    assert json.loads(r.output)["escalation_level"] == 1
    r = run(app, ["alerts", "resolve", str(alert.id), "--by", "cy", "--database-url", db_url])
    assert json.loads(r.output)["status"] == "resolved"
    r = run(app, ["alerts", "ack", str(alert.id), "--by", "cy", "--database-url", db_url])
    assert r.exit_code == 1
    r = run(app, ["alerts", "list", "--open", "--json", "--database-url", db_url])
    assert json.loads(r.output) == []
    assert [e["by"] for e in analytics.events(db, alert.id)] == [
        "citypulse", "cy", "cy", "cy"]


def test_resolved_by_operator_while_still_burning_comes_back_after_hold(db, feed, city_model):
    eng, alert = _fire(db, feed, city_model)
    analytics.resolve(db, alert.id, by="ana", note="handled on site")
    burning = {"fir-1": {"smoke_pct": 20, "temperature_c": 80, "alarm": 1}}
    for s in range(2, 60, 5):  # clear_for_s of the fire rule is 60 s
        feed.write(s, burning)
        eng.tick(feed.at(s + 1))
    assert len(analytics.list_alerts(db, open_only=False)) == 1
    for s in range(62, 80, 5):
        feed.write(s, burning)
        eng.tick(feed.at(s + 1))
    alerts = analytics.list_alerts(db, open_only=False)
    assert [a.status for a in alerts] == ["open", "resolved"]


def test_alerts_open_at_a_past_time(db):
    """Open at T: started at or before T and not resolved by T, whatever the status now."""
    from datetime import UTC, datetime

    t0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)

    def new(entity, minutes, sev="warning"):
        return lifecycle.open_alert(db, lifecycle.NewAlert(
            rule="test", entity_kind="sensor", entity_id=entity, severity=sev,
            title=entity, started_at=t0 + timedelta(minutes=minutes)), now=t0)

    early = new("early", 0)                     # resolved at t0+10 min
    long_ = new("long", 5, "critical")          # resolved at t0+60 min
    still = new("still", 20)                    # never resolved
    later = new("later", 40)                    # starts after T
    analytics.resolve(db, early.id, by="ana", now=t0 + timedelta(minutes=10))
    analytics.resolve(db, long_.id, by="ana", now=t0 + timedelta(minutes=60))
    at = t0 + timedelta(minutes=30)
    got = analytics.alerts_open_at(db, at)
    assert [a.entity_id for a in got] == ["long", "still"]   # critical first
    assert all(isinstance(a, analytics.Alert) for a in got)
    assert later.id not in {a.id for a in got}
    # boundaries: open from started_at on; no longer open at resolved_at
    assert [a.id for a in analytics.alerts_open_at(db, t0)] == [early.id]
    assert analytics.alerts_open_at(db, t0 + timedelta(minutes=10)) == [
        analytics.get_alert(db, long_.id)]
    # after everything: only the never-resolved ones that have started
    assert {a.id for a in analytics.alerts_open_at(db, t0 + timedelta(hours=2))} == {
        still.id, later.id}
