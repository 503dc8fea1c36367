"""Core commands: ``citypulse up``, ``citypulse db migrate|maintain``, ``citypulse config``."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import typer

from citypulse.settings import Settings, load_settings

db_app = typer.Typer(no_args_is_help=True, help="Database schema and upkeep.")

# Services `citypulse up` runs, in start order: (name, argv after `citypulse`).  A stage
# adds itself by appending to UP_SERVICES in its cli.register(); the order of registration
# follows the pipeline.
UP_SERVICES: list[tuple[str, list[str]]] = []
# Services `citypulse up` runs only when a boolean setting is on: name -> settings field.
UP_WHEN: dict[str, str] = {}


@db_app.command("migrate")
def db_migrate(
    database_url: str = typer.Option(None, help="postgresql:// URL (CITYPULSE_DATABASE_URL)"),
    dry_run: bool = typer.Option(False, help="Print the statements, change nothing."),
    backend: str = typer.Option(None, help="timescale|postgres (default: detect)"),
) -> None:
    """Apply pending schema migrations (idempotent)."""
    from citypulse import schema

    settings = load_settings(database_url=database_url)
    if dry_run:
        for stmt in schema.migrate(None, settings, backend=backend or "postgres", dry_run=True):
            print(stmt + "\n")
        return
    with schema.connect(settings, autocommit=True) as conn:
        issued = schema.migrate(conn, settings, backend=backend)
        store = schema.Store.open(conn, settings, migrate_now=False)
        print(f"migrated: {len(issued)} statements issued; backend {store.backend}")


@db_app.command("maintain")
def db_maintain(database_url: str = typer.Option(None)) -> None:
    """Run the store's upkeep once (partitions, retention, rollups)."""
    from citypulse import schema

    settings = load_settings(database_url=database_url)
    with schema.connect(settings, autocommit=True) as conn:
        print(json.dumps(schema.Store.open(conn, settings).maintain(conn)))


def config_show() -> None:
    """Print the effective settings (secrets masked) as JSON."""
    s = load_settings()
    data = json.loads(s.model_dump_json())
    for k in ("dashboard_secret", "kiosk_token"):
        if data.get(k):
            data[k] = "***"
    print(json.dumps(data, indent=2))


def up(
    demo: bool = typer.Option(True, help="Also run the simulator on a demo city."),
    data_dir: Path = typer.Option(None, help="Private services' data (default .citypulse/)."),
    sensors: int = typer.Option(20_000, help="Simulated sensors in the demo deployment."),
    city: Path = typer.Option(None, help="Run on this city: a file to import (.osm.pbf, "
                              ".geojson, .gpkg, .parquet) made the active city first."),
) -> None:
    """Start everything on this machine; Ctrl-C stops it all cleanly.

    Starts a private Mosquitto and PostgreSQL (unless CITYPULSE_MQTT_URL /
    CITYPULSE_DATABASE_URL are set to running servers), migrates, then runs each stage's
    service: collector, simulator (demo), twin, alerts, dashboards, and the SensorThings
    MQTT relay when CITYPULSE_STA_MQTT is true.
    """
    from citypulse import schema
    from citypulse.stack import PrivateMosquitto, PrivatePostgres

    # Handlers first: a SIGTERM/SIGINT at any moment (even while PostgreSQL is starting)
    # stops what was started so far; the services run in their own sessions, so a signal
    # to this process group never reaches them and only this process can stop them.
    state = {"starting": True, "stopping": False}

    def _stop(*_: object) -> None:
        state["stopping"] = True
        if state["starting"]:
            raise _Interrupted

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGHUP, _stop)
    base = load_settings(data_dir=data_dir)
    data = base.data_dir.resolve()
    started: list = []
    procs: list[tuple[str, subprocess.Popen]] = []
    env = dict(os.environ)
    try:
        if "CITYPULSE_DATABASE_URL" not in os.environ:
            pg = PrivatePostgres(data / "pg", port=_stable_port(data / "pg.port"), durable=True)
            started.append(pg)  # before start(): a half-started server is stopped too
            pg.start()
            env["CITYPULSE_DATABASE_URL"] = pg.url
        if "CITYPULSE_MQTT_URL" not in os.environ:
            mq = PrivateMosquitto(data / "mqtt", port=_stable_port(data / "mqtt.port"))
            started.append(mq)
            mq.start()
            env["CITYPULSE_MQTT_URL"] = mq.url
        env.setdefault("CITYPULSE_DATA_DIR", str(data))
        settings = Settings(database_url=env["CITYPULSE_DATABASE_URL"],
                            mqtt_url=env["CITYPULSE_MQTT_URL"], data_dir=data)
        with schema.connect(settings, autocommit=True) as conn:
            schema.migrate(conn, settings)
            if city is not None:
                from citypulse.city.cli import read_city
                from citypulse.city.store import save

                model, report = read_city(city)
                version = save(conn, model, source=city.name, report=report, activate=True)
                print(f"city     {model.name} version {version} active "
                      f"({len(model.segments)} segments, {len(model.zones)} zones)", flush=True)
        _say(f"database {settings.database_url}\nbroker   {settings.mqtt_url}")
        env["CITYPULSE_DEMO_SENSORS"] = str(sensors)  # settings.demo_sensors of `sim run --demo`
        for name, argv in UP_SERVICES:
            if (name.startswith("sim") and not demo) or (
                    name in UP_WHEN and not getattr(base, UP_WHEN[name])):
                continue
            p = subprocess.Popen([sys.executable, "-m", "citypulse", *argv], env=env)
            procs.append((name, p))
            _say(f"started {name}: citypulse {' '.join(argv)} (pid {p.pid})")
        state["starting"] = False
        while not state["stopping"]:
            for name, p in procs:
                if p.poll() is not None:
                    _say(f"{name} exited with {p.returncode}; stopping", err=True)
                    state["stopping"] = True
            for svc in started:
                if not svc.running:
                    _say(f"{type(svc).__name__} stopped by itself; stopping", err=True)
                    state["stopping"] = True
            time.sleep(0.5)
    except _Interrupted:
        pass
    finally:
        _shutdown(procs, started)


class _Interrupted(BaseException):
    """A stop signal arrived while `citypulse up` was still starting services."""


def _say(text: str, err: bool = False) -> None:
    """Print, but never fail: the terminal or pipe may be gone when the group is stopped."""
    try:
        print(text, file=sys.stderr if err else sys.stdout, flush=True)
    except (OSError, ValueError):
        pass


def _shutdown(procs: list[tuple[str, subprocess.Popen]], started: list) -> None:
    """Stop the stage processes (newest first), then the private services.

    Further stop signals are ignored meanwhile, so a second Ctrl-C cannot leave a broker behind.
    """
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    for _name, p in reversed(procs):
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
    for _name, p in reversed(procs):
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)
    for svc in reversed(started):
        try:
            svc.stop()
        except Exception as exc:  # noqa: BLE001 - the next service must still be stopped
            _say(f"stopping {type(svc).__name__} failed ({exc}); killing it", err=True)
            svc.kill()
    _say("citypulse stopped")


def _stable_port(path: Path) -> int:
    """Reuse the port chosen last time for this data dir, so URLs stay put across runs."""
    from citypulse.stack import free_port

    try:
        port = int(path.read_text())
    except (OSError, ValueError):
        port = 0
    import socket

    if port:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                port = 0
    if not port:
        port = free_port()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(str(port))
    return port


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add the core commands to the root app."""
    app.add_typer(db_app, name="db")
    app.command("up")(up)
    app.command("config")(config_show)
