"""Commands: ``citypulse dashboard [--host] [--port]`` and ``citypulse bench dashboard``."""

from __future__ import annotations

import json
import logging

import typer

from citypulse.settings import load_settings

log = logging.getLogger(__name__)


def dashboard(
    host: str = typer.Option(None, help="Bind address (CITYPULSE_DASHBOARD_HOST)."),
    port: int = typer.Option(None, help="Port (CITYPULSE_DASHBOARD_PORT)."),
    database_url: str = typer.Option(None, help="postgresql:// URL (CITYPULSE_DATABASE_URL)"),
    workers: int = typer.Option(None, help="Worker processes (CITYPULSE_WEB_WORKERS)."),
    threads: int = typer.Option(None, help="Threads per worker (CITYPULSE_WEB_THREADS)."),
) -> None:
    """Serve the dashboards and the HTTP APIs (gunicorn) until SIGTERM or Ctrl-C.

    HTTPS when CITYPULSE_WEB_TLS_CERT/KEY are set; refuses to start with the dev users or
    dev secret when CITYPULSE_ENV=production or a users file is configured.
    """
    from citypulse.settings import ConfigError
    from dashboards.app import AssetsMissing
    from dashboards.server import run

    settings = load_settings(dashboard_host=host, dashboard_port=port,
                             database_url=database_url, web_workers=workers,
                             web_threads=threads)
    scheme = "https" if settings.web_tls else "http"
    url = f"{scheme}://{settings.dashboard_host}:{settings.dashboard_port}"
    try:
        print(f"dashboards on {url}/wall (log in at {url}/login); {settings.web_workers} "
              f"workers x {settings.web_threads} threads", flush=True)
        run(settings)
    except (AssetsMissing, ConfigError) as exc:
        typer.echo(f"citypulse dashboard: {exc}", err=True)
        raise typer.Exit(2) from None
    print("dashboards stopped", flush=True)


def bench_dashboard(
    sensors: int = typer.Option(200_000, help="Sensors registered (all drawn on the wall)."),
    refreshes: int = typer.Option(5, help="Wall refreshes measured after the first render."),
    as_json: bool = typer.Option(True, "--json/--no-json", help="Print JSON."),
    fast_gl: bool = typer.Option(True, help="Mesa llvmpipe WebGL (else SwiftShader)."),
) -> None:
    """Time to first full render of /wall in headless Chromium, bytes and server time per refresh."""
    from dashboards.bench import run

    result = run(sensors=sensors, refreshes=refreshes, fast_gl=fast_gl)
    print(json.dumps(result, indent=None if as_json else 2))


def bench_web(
    sensors: int = typer.Option(2000, help="Sensors seeded."),
    seconds: float = typer.Option(10.0, help="Seconds per endpoint."),
    clients: int = typer.Option(8, help="Concurrent logged-in clients."),
    tls: bool = typer.Option(False, help="Serve HTTPS (self-signed, openssl)."),
    workers: int = typer.Option(2, help="Server worker processes."),
    threads: int = typer.Option(8, help="Threads per worker."),
) -> None:
    """Requests/s and latency of /api/state, /api/twin/zones and /login through gunicorn."""
    from dashboards.webbench import run

    print(json.dumps(run(sensors=sensors, seconds=seconds, clients=clients, tls=tls,
                         workers=workers, threads=threads)))


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``dashboard`` and ``bench dashboard``; ``citypulse up`` runs the dashboards."""
    from citypulse.commands import UP_SERVICES

    app.command("dashboard")(dashboard)
    bench_app.command("dashboard")(bench_dashboard)
    bench_app.command("web")(bench_web)
    if ("dashboard", ["dashboard"]) not in UP_SERVICES:
        UP_SERVICES.append(("dashboard", ["dashboard"]))
