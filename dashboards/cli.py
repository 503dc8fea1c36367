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
) -> None:
    """Serve the dashboards (wall, emergency, traffic, ingest, replay) until Ctrl-C."""
    from werkzeug.serving import make_server

    from dashboards.app import AssetsMissing, create_app

    settings = load_settings(dashboard_host=host, dashboard_port=port,
                             database_url=database_url)
    try:
        app = create_app(settings)
    except AssetsMissing as exc:
        typer.echo(f"citypulse dashboard: {exc}", err=True)
        raise typer.Exit(2) from None
    server = make_server(settings.dashboard_host, settings.dashboard_port, app.server,
                         threaded=True)
    url = f"http://{settings.dashboard_host}:{settings.dashboard_port}"
    print(f"dashboards on {url}/wall (log in at {url}/login)", flush=True)
    import signal
    import threading

    def _stop(*_: object) -> None:  # shutdown() waits for serve_forever: not from its thread
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        app.server.extensions["citypulse"].pool.close()
    print("dashboards stopped", flush=True)


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``dashboard``; ``citypulse up`` runs the dashboards."""
    from citypulse.commands import UP_SERVICES

    app.command("dashboard")(dashboard)
    if ("dashboard", ["dashboard"]) not in UP_SERVICES:
        UP_SERVICES.append(("dashboard", ["dashboard"]))
