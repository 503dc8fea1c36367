"""Commands: ``citypulse dashboard [--host] [--port]``."""

from __future__ import annotations

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
    url = settings.web_url
    try:
        print(f"dashboards on {url}/wall (log in at {url}/login); {settings.web_workers} "
              f"workers x {settings.web_threads} threads", flush=True)
        run(settings)
    except (AssetsMissing, ConfigError) as exc:
        typer.echo(f"citypulse dashboard: {exc}", err=True)
        raise typer.Exit(2) from None
    print("dashboards stopped", flush=True)


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``dashboard``; ``citypulse up`` runs the dashboards."""
    from citypulse.commands import UP_SERVICES

    app.command("dashboard")(dashboard)
    if ("dashboard", ["dashboard"]) not in UP_SERVICES:
        UP_SERVICES.append(("dashboard", ["dashboard"]))
