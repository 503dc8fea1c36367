"""Commands: ``citypulse commands send|fleet|list|show|...|run`` and ``bench commands``.

The CLI acts as an operator named by ``--by`` (default: the login user): whoever can run it
holds the database credentials of the control room.  Exit code 1 with a message when the
policy or the state refuses the request.
"""

from __future__ import annotations

import getpass
import json
import signal
import sys
import threading

import typer

from citypulse.settings import load_settings

commands_app = typer.Typer(no_args_is_help=True, help="Remote control of actuators.")
CLI_ROLE = "operator"


def _conn():
    import psycopg

    return psycopg.connect(load_settings().database_url, autocommit=True)


def _fail(exc: Exception) -> None:
    typer.echo(f"citypulse commands: {exc}", err=True)
    raise typer.Exit(1)


def _call(fn, *args, **kwargs):
    from control import api, policy, targets

    try:
        with _conn() as conn:
            return fn(conn, load_settings(), *args, **kwargs)
    except (api.ControlError, policy.PolicyError, targets.TargetError) as exc:
        _fail(exc)


def _params(text: str | None) -> dict:
    try:
        val = json.loads(text) if text else {}
    except json.JSONDecodeError as exc:
        _fail(ValueError(f"--params is not JSON: {exc}"))
    return val


def _print(rec, as_json: bool) -> None:
    from control.records import jsonable

    if as_json:
        print(json.dumps(jsonable(rec) if isinstance(rec, dict) else
                         [jsonable(r) for r in rec], default=str))


@commands_app.command("send")
def send(device: str, method: str,
         params: str = typer.Option(None, "--params", help="JSON object of the method's params"),
         expires_in: float = typer.Option(None, "--expires-in", help="seconds (default setting)"),
         alert: int = typer.Option(None, help="the alert this command serves (audit link)"),
         by: str = typer.Option(None, help="who asks (default: login user)"),
         as_json: bool = typer.Option(False, "--json")) -> None:
    """Request one command; prints its id (with --json: the whole record)."""
    from control import api

    rec = _call(api.request, device, method, _params(params), by=by or getpass.getuser(),
                role=CLI_ROLE, expires_in_s=expires_in, alert_id=alert)
    if as_json:
        _print(rec, True)
    else:
        print(rec["id"])
        if rec["status"] != "queued":
            typer.echo(f"{rec['status']}: {rec['reason']}".rstrip(": "), err=True)


@commands_app.command("fleet")
def fleet_cmd(kind: str, method: str,
              zone: str = typer.Option(None), segment: str = typer.Option(None),
              alert: int = typer.Option(None, help="every actuator of KIND in the alert's scope"),
              params: str = typer.Option(None, "--params"),
              expires_in: float = typer.Option(None, "--expires-in"),
              rate: float = typer.Option(None, help="devices per second"),
              abort_pct: float = typer.Option(None, help="stop when more than this % fail"),
              by: str = typer.Option(None)) -> None:
    """A fleet command to every KIND actuator in a zone, along a segment or in an alert's scope."""
    from control import api

    target = {k: v for k, v in (("zone", zone), ("segment", segment), ("alert", alert)) if v}
    out = _call(api.fleet, kind, method, target, _params(params), by=by or getpass.getuser(),
                role=CLI_ROLE, expires_in_s=expires_in, rate_per_s=rate, abort_pct=abort_pct)
    print(json.dumps(out))


@commands_app.command("list")
def list_cmd(status: str = typer.Option(None), device: str = typer.Option(None),
             alert: int = typer.Option(None), limit: int = typer.Option(50),
             as_json: bool = typer.Option(False, "--json")) -> None:
    """Recent commands, newest first."""
    from control import records

    with _conn() as conn:
        rows = records.listing(conn, limit, status, device, alert)
    if as_json:
        _print(rows, True)
        return
    for r in rows:
        print(f"{r['id']}  {r['created_at']:%Y-%m-%d %H:%M:%S}  {r['status']:<16} "
              f"{r['device_id']:<14} {r['method']:<10} {r['requested_by']:<10} {r['reason']}")


@commands_app.command("show")
def show(command_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """One command with its status and audit trail."""
    from control import records

    with _conn() as conn:
        rec = records.get(conn, command_id)
    if rec is None:
        _fail(ValueError(f"no command {command_id}"))
    if as_json:
        _print(rec, True)
        return
    print(f"{rec['id']} {rec['device_id']} {rec['method']} {json.dumps(rec['params'])}\n"
          f"status {rec['status']} {rec['reason']}")
    for e in rec["events"]:
        print(f"  {e['at']:%H:%M:%S.%f} {e['action']:<14} {e['status']:<16} by {e['by']}")


@commands_app.command("approve")
def approve(ident: str, by: str = typer.Option(..., help="the approving operator")) -> None:
    """Approve a pending high-risk command (or fleet): not by its requester."""
    from control import api

    for r in _call(api.approve, ident, by=by, role=CLI_ROLE):
        print(f"{r['id']} {r['status']}")


@commands_app.command("reject")
def reject(ident: str, by: str = typer.Option(...), note: str = typer.Option("")) -> None:
    """Refuse a pending command (or fleet)."""
    from control import api

    for r in _call(api.reject, ident, by=by, role=CLI_ROLE, note=note):
        print(f"{r['id']} {r['status']}")


@commands_app.command("cancel")
def cancel(ident: str, by: str = typer.Option(None)) -> None:
    """Cancel a command (or a fleet's commands) not sent yet."""
    from control import api

    for r in _call(api.cancel, ident, by=by or getpass.getuser(), role=CLI_ROLE):
        print(f"{r['id']} {r['status']}")


@commands_app.command("methods")
def methods_cmd(kind: str) -> None:
    """The methods of a device kind: params schema, risk, effect (JSON)."""
    from citypulse.actuators import methods

    try:
        print(json.dumps([m.describe() for m in methods(kind).values()], indent=2))
    except KeyError as exc:
        _fail(exc)


@commands_app.command("run")
def run_cmd() -> None:
    """The commands worker: sends queued commands, tracks answers (Ctrl-C stops)."""
    from control.worker import Worker

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    import psycopg

    try:
        w = Worker(load_settings(), stop=stop)
    except psycopg.OperationalError:
        if stop.is_set():  # stopped while waiting for the database
            return
        raise
    print("commands worker running", flush=True)
    w.run(stop)
    print(json.dumps({"stopped": True, **w.stats}), file=sys.stderr)


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``commands ...``; ``citypulse up`` runs the worker."""
    from citypulse.commands import UP_SERVICES

    app.add_typer(commands_app, name="commands")
    if ("commands", ["commands", "run"]) not in UP_SERVICES:
        UP_SERVICES.append(("commands", ["commands", "run"]))
