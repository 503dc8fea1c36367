"""The production server's configuration: gunicorn from the settings, used by compose."""

from __future__ import annotations

from pathlib import Path

import yaml

from citypulse.settings import Settings
from dashboards import cli, server

ROOT = Path(__file__).resolve().parents[2]


def test_gunicorn_options_come_from_the_settings():
    s = Settings(web_workers=3, web_threads=5, dashboard_port=9001, web_graceful_s=7,
                 web_tls_cert=Path("/x.crt"), web_tls_key=Path("/x.key"))
    o = server.options(s)
    assert (o["workers"], o["threads"], o["worker_class"]) == (3, 5, "gthread")
    assert o["bind"] == ["127.0.0.1:9001"] and o["graceful_timeout"] == 7
    assert (o["certfile"], o["keyfile"]) == ("/x.crt", "/x.key")
    # the access log has the path but never the query string, referer or headers
    fmt = o["access_log_format"]
    assert "%(U)s" in fmt and not any(a in fmt for a in ("%(r)s", "%(q)s", "%(f)s", "%({"))
    assert "certfile" not in server.options(Settings())


def test_dashboard_command_and_compose_use_the_production_server():
    import inspect

    assert "server import run" in inspect.getsource(cli.dashboard)
    assert "make_server" not in inspect.getsource(cli)
    svc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["dashboard"]
    assert svc["command"][:2] == ["citypulse", "dashboard"]
    assert svc["environment"]["CITYPULSE_ENV"] == "production"
    assert "/healthz" in " ".join(svc["healthcheck"]["test"])
