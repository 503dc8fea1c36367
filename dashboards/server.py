"""The production web server: gunicorn serving the dashboards app and every HTTP API.

In: the settings (bind address, ``web_workers`` processes x ``web_threads`` threads,
``web_tls_cert``/``web_tls_key`` for HTTPS, ``web_graceful_s``, ``web_access_log``).  Out:
:func:`run` blocks until SIGTERM/SIGINT, then lets requests in flight finish (up to
``web_graceful_s``) and closes each worker's database pool.  Each worker builds its own app
(no pool is shared across a fork).  The access log has the client, method, path (never the
query string, which may carry the kiosk token), status, bytes, seconds and user agent;
headers (sessions, API keys) are never logged.  ``citypulse dashboard``, ``citypulse up``
and docker-compose.yml all serve through here.
"""

from __future__ import annotations

import logging
from typing import Any

from gunicorn.app.base import BaseApplication

from citypulse.settings import Settings

log = logging.getLogger(__name__)

ACCESS_LOG_FORMAT = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(L)ss "%(a)s"'


def options(settings: Settings) -> dict[str, Any]:
    """The gunicorn configuration for ``settings`` (also what the tests and docs check)."""
    opts: dict[str, Any] = {
        "bind": [f"{settings.dashboard_host}:{settings.dashboard_port}"],
        "workers": settings.web_workers,
        "threads": settings.web_threads,
        "worker_class": "gthread",
        "timeout": settings.web_timeout_s,
        "graceful_timeout": settings.web_graceful_s,
        "keepalive": 5,
        "accesslog": "-" if settings.web_access_log else None,
        "access_log_format": ACCESS_LOG_FORMAT,
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "citypulse-web",
        "control_socket_disable": True,
        "forwarded_allow_ips": "127.0.0.1,::1",
        "limit_request_line": 8190,
        "limit_request_fields": 100,
        "worker_exit": _worker_exit,
    }
    if settings.web_tls_cert is not None:
        opts.update(certfile=str(settings.web_tls_cert),
                    keyfile=str(settings.web_tls_key or settings.web_tls_cert))
    return opts


def _worker_exit(_server: Any, worker: Any) -> None:
    app = getattr(worker, "wsgi", None)
    context = getattr(app, "extensions", {}).get("citypulse") if app is not None else None
    if context is not None:
        context.pool.close()


class _Server(BaseApplication):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        for key, value in options(self.settings).items():
            if value is not None:
                self.cfg.set(key, value)

    def load(self) -> Any:  # in each worker, after the fork
        from dashboards.app import create_app

        return create_app(self.settings).server


def run(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT (graceful), then return.

    Raises ConfigError/AssetsMissing before any worker starts when the app cannot be built
    (the app is built once here to check: dev users in production, missing deck.gl).
    """
    from dashboards.app import check_start

    check_start(settings)
    try:
        _Server(settings).run()
    except SystemExit as exc:  # the arbiter exits the process when it halts
        if exc.code not in (0, None):
            raise
