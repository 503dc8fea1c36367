"""The Dash application: pages, login, static geometry and the alert action API.

``create_app(settings)`` builds a ``dash.Dash`` (its Flask server is ``app.server``) whose
pages live in ``dashboards/pages``.  Static geometry is served once per page load from
``/dash-static/city.json`` and ``/dash-static/sensors.bin``; callbacks only send state.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import dash
import flask
import orjson
from dash import dcc, html
from psycopg_pool import ConnectionPool

from citypulse import apikeys
from citypulse.settings import Settings
from dashboards import auth, commands_api, data, http_api, ingest_api, openapi, recipients, security
from dashboards.throttle import Throttle
from sharing import http as sharing_http
from standards import ngsild, sta

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
ASSETS = HERE / "assets"
DECK_ASSET = ASSETS / "00_deckgl.min.js"
PAGES = (("/wall", "Wall"), ("/emergency", "Emergency"), ("/traffic", "Traffic"),
         ("/ingest", "Ingest"), ("/maintenance", "Maintenance"), ("/replay", "Replay"),
         ("/sharing", "Sharing"), ("/commands", "Commands"))


class AssetsMissing(RuntimeError):
    """deck.gl has not been installed into dashboards/assets (run scripts/build-assets.sh)."""


@dataclass
class Context:
    """What callbacks need: the settings, a connection pool and timing of refreshes."""

    settings: Settings
    pool: ConnectionPool
    timings: dict[str, list[float]] = field(default_factory=dict)
    last_scrape: tuple[float, dict] | None = None  # collectors' metrics, for rates

    def timed(self, name: str, seconds: float) -> None:
        """Record a callback's server time (the last 200 per name)."""
        lst = self.timings.setdefault(name, [])
        lst.append(seconds)
        del lst[:-200]


def ctx() -> Context:
    """The running app's context (inside a request)."""
    return flask.current_app.extensions["citypulse"]


def check_assets() -> None:
    """Raise :class:`AssetsMissing` with the fix when deck.gl is not in place."""
    if not DECK_ASSET.is_file() or DECK_ASSET.stat().st_size < 100_000:
        raise AssetsMissing(
            f"{DECK_ASSET} is missing: the dashboards serve deck.gl themselves (no CDN). "
            "Run `bash scripts/build-assets.sh` (or `make deps`) to install it from npm.")


def _shell() -> html.Div:
    user, role = auth.current() if flask.has_request_context() else (None, None)
    return html.Div([
        html.Div([html.Span("citypulse", className="brand")]
                 + [dcc.Link(name, href=path) for path, name in PAGES]
                 + [html.Span(f"{user} ({role})" if user else "", className="who"),
                    html.A("API", href="/api/openapi.json", title="OpenAPI of citypulse's API"),
                    html.A("NGSI-LD", href="/ngsi-ld/v1/types",
                           title="NGSI-LD (Smart Data Models), see docs/standard-apis.md"),
                    html.A("SensorThings", href="/sta/v1.1/",
                           title="OGC SensorThings API 1.1, see docs/standard-apis.md"),
                    html.A("log out", href="/logout")], className="nav"),
        dash.page_container,
    ])


def create_app(settings: Settings) -> dash.Dash:
    """Build the dashboards app for ``settings`` (database, secret, users, kiosk token).

    Raises :class:`AssetsMissing` when deck.gl has not been installed.  Serve it with
    ``app.run(host, port)`` or any WSGI server on ``app.server``.
    """
    users = check_start(settings)
    server = flask.Flask("citypulse.dashboards")
    server.secret_key = settings.dashboard_secret
    pool = ConnectionPool(settings.database_url, min_size=1,
                          max_size=max(4, min(settings.web_threads, 16)), open=True,
                          kwargs={"autocommit": True}, name="dashboards")
    context = Context(settings, pool)
    server.extensions["citypulse"] = context

    def audit(user: str, action: str, detail: dict) -> None:
        with pool.connection() as conn:
            data.audit(conn, user, action, detail)

    def verify_key(secret: str) -> apikeys.KeyInfo | None:
        with pool.connection() as conn:
            return apikeys.verify(conn, secret)

    auth.install(server, users, settings.kiosk_token, audit=audit, verify_key=verify_key,
                 throttle=Throttle(pool, settings))
    ingest_api.install(server, settings)
    _routes(server, context)
    http_api.install(server, settings, pool)
    server.register_blueprint(sharing_http.create_blueprint(
        settings, pool, auth.require, auth.require_scope, data.audit))
    commands_api.install(server, context)
    std_read, std_access = recipients.install(server, settings, pool)
    server.register_blueprint(ngsild.create_blueprint(settings, pool, std_read, std_access))
    server.register_blueprint(sta.create_blueprint(pool, std_read, std_access))
    openapi.install(server)
    app = dash.Dash(
        __name__, server=server, use_pages=True, pages_folder=str(HERE / "pages"),
        assets_folder=str(ASSETS), serve_locally=True, title="citypulse",
        suppress_callback_exceptions=True, update_title=None, compress=False,
        assets_ignore=r".*\.map$")
    # severity colours come from analytics, as CSS variables every stylesheet can use
    app.index_string = app.index_string.replace(
        "{%css%}", '{%css%}<style id="cp-severity">' + data.severity_css() + "</style>", 1)
    app.layout = _shell
    security.install(server, app, settings)
    return app


def check_start(settings: Settings) -> dict[str, auth.User]:
    """The users, after the start checks (deck.gl present, no dev users/secret in production).

    Raises :class:`AssetsMissing` or :class:`citypulse.settings.ConfigError` with the fix.
    """
    check_assets()
    users = auth.load_users(settings.users_file)
    security.check_start(settings, users)
    return users


def _routes(server: flask.Flask, context: Context) -> None:
    @server.route("/")
    def index():
        return flask.redirect("/wall")

    @server.route("/dash-static/city.json")
    def city_json():
        with context.pool.connection() as conn:
            data.follow_city(conn, force=True)
        model = data.city_model()
        body = orjson.dumps({k: model[k] for k in ("lake", "water", "zones", "segments",
                                                  "name", "centre", "extent_m")})
        resp = flask.Response(body, mimetype="application/json")
        resp.headers["Cache-Control"] = "private, max-age=3600"
        return resp

    @server.route("/dash-static/sensors.bin")
    def sensors_bin():
        with context.pool.connection() as conn:
            n, blob = data.sensor_positions(conn)
        resp = flask.Response(blob, mimetype="application/octet-stream")
        resp.headers["X-Sensor-Count"] = str(n)
        resp.headers["Cache-Control"] = "private, max-age=60"
        return resp

    @server.route("/api/state")
    def state():
        auth.require_read()
        at = http_api.time_arg("at")
        t0 = time.perf_counter()
        with context.pool.connection() as conn:
            st = data.map_state(conn, at)
        context.timed("api_state", time.perf_counter() - t0)
        return flask.Response(orjson.dumps(st), mimetype="application/json")

    @server.route("/api/alerts/<int:alert_id>/<action>", methods=["POST"])
    def alert_action(alert_id: int, action: str):
        try:
            user = auth.require("operator")
        except PermissionError as exc:
            return flask.jsonify({"error": str(exc)}), 403
        if action not in data.ALERT_ACTIONS:
            return flask.jsonify({"error": f"unknown action {action}"}), 404
        body = flask.request.get_json(silent=True) or {}
        if not isinstance(body, dict) or not isinstance(body.get("note", ""), str):
            return flask.jsonify({"error": "send a JSON object {\"note\": text}"}), 400
        note = body.get("note", "")
        with context.pool.connection() as conn:
            error = data.alert_action(conn, alert_id, action, user, note)
        if error:
            return flask.jsonify({"error": error}), 409
        return flask.jsonify({"ok": True, "by": user})

    @server.route("/api/timings")
    def timings():
        auth.require_read()
        return flask.Response(json.dumps(context.timings), mimetype="application/json")


def tile(label: str, value: str, sub: str = "", cls: str = "") -> html.Div:
    """One KPI tile (label, big value, small print)."""
    return html.Div([html.Div(label, className="label"), html.Div(value, className="value"),
                     html.Div(sub, className="sub")], className=f"tile {cls}")


def now() -> datetime:
    """The current time (UTC)."""
    return datetime.now(UTC)
