"""The web app's HTTP API surface: the twin's API behind the login, JSON errors on /api/.

In: the Flask server, the settings and the app's connection pool.  Out: ``/api/twin/...``
(``twin.api.create_blueprint``) readable with a session (any role) or an API key with
``api:read``; ``/healthz`` (open, no data); every ``/api/...`` answer that is an error
(400 bad parameter naming it, 404 unknown path, 405, 500) is JSON, never the Dash page.
"""

from __future__ import annotations

from datetime import datetime

import flask
from werkzeug.exceptions import HTTPException

from citypulse.settings import Settings
from dashboards import auth


def time_arg(name: str) -> datetime | None:
    """The request's ``name`` parameter as a time; aborts 400 JSON naming it when bad."""
    from twin.api import BadParameter, time_param

    try:
        return time_param(name)
    except BadParameter as exc:
        resp = flask.jsonify({"error": str(exc), "parameter": exc.name})
        resp.status_code = 400
        flask.abort(resp)


def install(server: flask.Flask, settings: Settings, pool) -> None:
    """Mount the twin API and the JSON error handling for ``/api/``."""
    from twin.api import create_blueprint

    bp = create_blueprint(settings, pool=pool)
    bp.before_request(lambda: (auth.require_read(), None)[1])
    server.register_blueprint(bp)

    @server.get("/healthz")
    def healthz():
        return {"ok": True}

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]

    @server.route("/api", methods=methods, defaults={"rest": ""})
    @server.route("/api/", methods=methods, defaults={"rest": ""})
    @server.route("/api/<path:rest>", methods=methods)
    def api_unknown(rest: str):
        auth.require_read()  # no probing of the API's shape without a credential
        return flask.jsonify({"error": f"no such API endpoint: /api/{rest}"}), 404

    @server.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if not flask.request.path.startswith("/api/"):
            return exc
        resp = exc.get_response()
        if resp.mimetype == "application/json":
            return resp
        return flask.jsonify({"error": exc.description or exc.name}), exc.code

    @server.errorhandler(Exception)
    def crash(exc: Exception):
        if isinstance(exc, HTTPException):
            return http_error(exc)
        server.logger.exception("unhandled error on %s", flask.request.path)
        if flask.request.path.startswith("/api/"):
            return flask.jsonify({"error": "internal error"}), 500
        return "internal error", 500
