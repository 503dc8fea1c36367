"""``citypulse alerts ...`` commands."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

import typer

from citypulse.commands import UP_SERVICES
from citypulse.settings import load_settings

alerts_app = typer.Typer(no_args_is_help=True, help="Traffic and emergency alerts.")


def _conn(database_url: str | None):
    import psycopg

    return psycopg.connect(load_settings(database_url=database_url).database_url,
                           autocommit=True)


@alerts_app.command("run")
def run_cmd(
    database_url: str = typer.Option(None, help="postgresql:// URL (CITYPULSE_DATABASE_URL)"),
    mqtt_url: str = typer.Option(None, help="mqtt:// URL (CITYPULSE_MQTT_URL)"),
    rules_file: Path = typer.Option(None, help="Rules YAML (CITYPULSE_RULES_FILE)"),
    tick: float = typer.Option(None, help="Seconds between evaluations (default 1)."),
    metrics_port: int = typer.Option(None, help="Serve Prometheus /metrics on this port."),
) -> None:
    """Run the alerts worker: evaluate the rules every tick, deliver alerts (Ctrl-C stops)."""
    from analytics.worker import run

    settings = load_settings(database_url=database_url, mqtt_url=mqtt_url,
                             rules_file=rules_file, alerts_tick_s=tick)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"alerts worker: database {settings.database_url}, broker {settings.mqtt_url}",
          flush=True)
    run(settings, stop, metrics_port=metrics_port)


@alerts_app.command("list")
def list_cmd(
    open_only: bool = typer.Option(False, "--open", help="Only alerts not resolved."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    limit: int = typer.Option(100, help="At most this many."),
    database_url: str = typer.Option(None),
) -> None:
    """List alerts (most severe and newest first)."""
    from analytics import list_alerts

    with _conn(database_url) as conn:
        alerts = list_alerts(conn, open_only=open_only, limit=limit)
    if as_json:
        print(json.dumps([a.to_json() for a in alerts], default=str))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table("id", "severity", "status", "rule", "entity", "zone", "started", "scope")
    for a in alerts:
        t.add_row(str(a.id), a.severity, a.status, a.rule, f"{a.entity_kind}:{a.entity_id}",
                  a.zone_id, a.started_at.isoformat(timespec="seconds"), str(len(a.scope)))
    Console().print(t)


def _transition(name: str, alert_id: int, by: str, note: str, database_url: str | None
                ) -> None:
    import analytics

    with _conn(database_url) as conn:
        try:
            a = getattr(analytics, name)(conn, alert_id, by=by, note=note)
        except analytics.AlertError as exc:
            print(f"citypulse alerts: {exc}", file=sys.stderr)
            raise typer.Exit(1) from None
    print(json.dumps({"id": a.id, "status": a.status, "severity": a.severity,
                      "escalation_level": a.escalation_level, "by": by}))


@alerts_app.command("ack")
def ack_cmd(alert_id: int, by: str = typer.Option(..., help="Who acknowledges."),
            note: str = typer.Option("", help="A note for the audit trail."),
            database_url: str = typer.Option(None)) -> None:
    """Acknowledge an open alert."""
    _transition("acknowledge", alert_id, by, note, database_url)


@alerts_app.command("resolve")
def resolve_cmd(alert_id: int, by: str = typer.Option(..., help="Who resolves."),
                note: str = typer.Option("", help="A note for the audit trail."),
                database_url: str = typer.Option(None)) -> None:
    """Resolve an alert."""
    _transition("resolve", alert_id, by, note, database_url)


@alerts_app.command("escalate")
def escalate_cmd(alert_id: int, by: str = typer.Option(..., help="Who escalates."),
                 note: str = typer.Option("", help="A note for the audit trail."),
                 database_url: str = typer.Option(None)) -> None:
    """Escalate an alert (escalation level + 1, severity critical)."""
    _transition("escalate", alert_id, by, note, database_url)


@alerts_app.command("show")
def show_cmd(alert_id: int, database_url: str = typer.Option(None)) -> None:
    """Print an alert with its audit trail and evidence readings as JSON."""
    import analytics

    with _conn(database_url) as conn:
        print(json.dumps(analytics.evidence(conn, alert_id), default=str))


@alerts_app.command("check-rules")
def check_rules_cmd(path: Path = typer.Argument(None, help="Rules YAML (default: built in)")
                    ) -> None:
    """Validate a rules file; a bad rule is reported with its line and the problem."""
    from analytics.rules import RulesError, load_rules

    try:
        rs = load_rules(path)
    except RulesError as exc:
        print(str(exc), file=sys.stderr)
        raise typer.Exit(2) from None
    print(f"{len(rs.rules)} rules OK: {', '.join(r.id for r in rs.rules)}")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``citypulse alerts ...``; the alerts worker joins ``citypulse up``."""
    app.add_typer(alerts_app, name="alerts")
    if ("alerts", ["alerts", "run"]) not in UP_SERVICES:
        UP_SERVICES.append(("alerts", ["alerts", "run"]))
