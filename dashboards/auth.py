"""Dashboard users, roles and the login guard (Flask sessions signed with the secret).

In: ``settings.users_file`` (YAML ``users: [{name, role, password_hash}]``; hashes from
``werkzeug.security.generate_password_hash``) or, when unset, the documented dev users
(admin/admin, operator/operator, viewer/viewer).  Out: :func:`install` adds /login,
/logout and /kiosk to a Flask server and refuses every other request without a session.
Roles: ``viewer`` < ``operator`` < ``admin``; :func:`require` checks them server-side.

Machine clients: a request to ``/api/...`` carrying ``Authorization: Bearer <key>`` or
``X-API-Key: <key>`` is authenticated by :func:`citypulse.apikeys.verify` (no session
needed); the key is in ``flask.g.api_key``.  A view that serves keys checks them with
:func:`require_scope` (key only) or :func:`require_read` (a session, or a key with
``api:read``).  A key-authenticated request whose view checked neither is answered 403.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from pathlib import Path

import flask
import yaml
from werkzeug.security import check_password_hash, generate_password_hash

from citypulse.apikeys import KeyInfo

log = logging.getLogger(__name__)

ROLES = ("viewer", "operator", "admin")
DEV_USERS = (("admin", "admin", "admin"), ("operator", "operator", "operator"),
             ("viewer", "viewer", "viewer"))
OPEN_PATHS = ("/login", "/logout", "/kiosk", "/_favicon.ico", "/favicon.ico")


@dataclass(frozen=True)
class User:
    """A dashboard user: name, role and password hash."""

    name: str
    role: str
    password_hash: str


def load_users(path: Path | None) -> dict[str, User]:
    """Users by name from the YAML file, or the dev users when ``path`` is None."""
    if path is None:
        return {n: User(n, r, generate_password_hash(p)) for n, p, r in DEV_USERS}
    doc = yaml.safe_load(Path(path).read_text()) or {}
    users = {}
    for entry in doc.get("users", []):
        role = entry.get("role", "viewer")
        if role not in ROLES:
            raise ValueError(f"{path}: user {entry.get('name')!r} has unknown role {role!r}; "
                             f"use one of {ROLES}")
        users[entry["name"]] = User(entry["name"], role, entry["password_hash"])
    return users


def authenticate(users: dict[str, User], name: str, password: str) -> User | None:
    """The user if ``password`` matches, else None."""
    user = users.get(name)
    if user is None or not check_password_hash(user.password_hash, password):
        return None
    return user


def allowed(role: str | None, needed: str) -> bool:
    """Whether ``role`` is at least ``needed``."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def current() -> tuple[str | None, str | None]:
    """(user name, role) of the current request's session."""
    return flask.session.get("user"), flask.session.get("role")


def require(needed: str) -> str:
    """The current user's name if their role is at least ``needed``; else PermissionError."""
    user, role = current()
    if not user or not allowed(role, needed):
        raise PermissionError(f"{user or 'anonymous'} ({role}) may not do this: needs {needed}")
    return user


def _json_abort(status: int, message: str) -> None:
    resp = flask.jsonify({"error": message})
    resp.status_code = status
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="citypulse"'
    flask.abort(resp)


def presented_key() -> str | None:
    """The API key the request carries (Authorization: Bearer, or X-API-Key), if any."""
    h = flask.request.headers
    bearer = h.get("Authorization", "")
    if bearer[:7].lower() == "bearer ":
        return bearer[7:].strip()
    return h.get("X-API-Key") or None


def require_scope(scope: str) -> KeyInfo:
    """The request's API key if it grants ``scope``; else abort 401 (no valid key) or 403 JSON."""
    key = flask.g.get("api_key")
    flask.g.scope_checked = True
    if key is None:
        _json_abort(401, "a valid API key is required (Authorization: Bearer <key>)")
    if not key.allows(scope):
        _json_abort(403, f"API key {key.name!r} lacks scope {scope!r}")
    return key


def require_read() -> str:
    """Who reads: the session user, or ``key:<name>`` for a key with ``api:read``; else abort."""
    if flask.g.get("api_key") is not None:
        return "key:" + require_scope("api:read").name
    flask.g.scope_checked = True
    user, _ = current()
    if not user:
        _json_abort(401, "login required")
    return user


_LOGIN_HTML = """<!doctype html><html><head><title>citypulse login</title>
<link rel="stylesheet" href="/assets/10_citypulse.css"></head>
<body class="login"><form method="post" action="/login" class="login-box">
<h1>citypulse</h1><p class="err">{error}</p>
<input type="hidden" name="next" value="{next}">
<label>user <input name="username" autofocus></label>
<label>password <input name="password" type="password"></label>
<button type="submit">Log in</button></form></body></html>"""


def install(server: flask.Flask, users: dict[str, User], kiosk_token: str | None,
            on_login=None, verify_key: Callable[[str], KeyInfo | None] | None = None) -> None:
    """Add /login, /logout, /kiosk and the guard that requires a session elsewhere.

    ``verify_key(secret)`` (e.g. ``apikeys.verify`` on a pooled connection) enables API keys
    on ``/api/...``; without it keys are refused.
    """

    @server.route("/login", methods=["GET", "POST"])
    def login():
        nxt = flask.request.values.get("next", "/wall")
        if not nxt.startswith("/") or nxt.startswith("//"):
            nxt = "/wall"
        error = ""
        if flask.request.method == "POST":
            user = authenticate(users, flask.request.form.get("username", ""),
                                flask.request.form.get("password", ""))
            if user is not None:
                flask.session.clear()
                flask.session["user"], flask.session["role"] = user.name, user.role
                if on_login:
                    on_login(user.name, "login")
                return flask.redirect(nxt)
            error = "wrong user or password"
        return _LOGIN_HTML.format(error=escape(error), next=escape(nxt)), (
            401 if error else 200)

    @server.route("/logout")
    def logout():
        flask.session.clear()
        return flask.redirect("/login")

    @server.route("/kiosk")
    def kiosk():
        token = flask.request.args.get("token", "")
        if not kiosk_token or not hmac.compare_digest(token, kiosk_token):
            return "bad kiosk token", 403
        flask.session.clear()
        flask.session["user"], flask.session["role"] = "kiosk", "viewer"
        return flask.redirect("/wall")

    @server.before_request
    def guard():
        path = flask.request.path
        if path.startswith(OPEN_PATHS) or path.startswith("/assets/"):
            return None
        secret = presented_key() if path.startswith("/api/") else None
        if secret is not None:
            info = verify_key(secret) if verify_key else None
            if info is None:
                return flask.jsonify({"error": "invalid, revoked or expired API key"}), 401
            flask.g.api_key = info
            flask.g.scope_checked = False
            return None
        if flask.session.get("user"):
            return None
        if path.startswith(("/_dash", "/api/", "/dash-static/")):
            return flask.jsonify({"error": "login required"}), 401
        return flask.redirect("/login?next=" + path)

    @server.after_request
    def key_checked(resp: flask.Response) -> flask.Response:
        key = flask.g.get("api_key")
        if key is not None and not flask.g.get("scope_checked") and resp.status_code < 400:
            log.error("%s %s answered an API key without checking its scope",
                      flask.request.method, flask.request.path)
            resp = flask.jsonify({"error": "this endpoint does not accept API keys"})
            resp.status_code = 403
        return resp
