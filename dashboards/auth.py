"""Dashboard users, roles and the login guard (Flask sessions signed with the secret).

In: ``settings.users_file`` (YAML ``users: [{name, role, password_hash}]``; hashes from
``werkzeug.security.generate_password_hash``) or, when unset, the documented dev users
(admin/admin, operator/operator, viewer/viewer).  Out: :func:`install` adds /login,
/logout and /kiosk to a Flask server and refuses every other request without a session.
Roles: ``viewer`` < ``operator`` < ``admin``; :func:`require` checks them server-side.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from html import escape
from pathlib import Path

import flask
import yaml
from werkzeug.security import check_password_hash, generate_password_hash

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


_LOGIN_HTML = """<!doctype html><html><head><title>citypulse login</title>
<link rel="stylesheet" href="/assets/10_citypulse.css"></head>
<body class="login"><form method="post" action="/login" class="login-box">
<h1>citypulse</h1><p class="err">{error}</p>
<input type="hidden" name="next" value="{next}">
<label>user <input name="username" autofocus></label>
<label>password <input name="password" type="password"></label>
<button type="submit">Log in</button></form></body></html>"""


def install(server: flask.Flask, users: dict[str, User], kiosk_token: str | None,
            on_login=None) -> None:
    """Add /login, /logout, /kiosk and the guard that requires a session elsewhere."""

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
        if flask.session.get("user"):
            return None
        if path.startswith("/api/share/"):
            return None  # machine endpoint: the share API checks the API key itself
        if path.startswith(("/_dash", "/api/", "/dash-static/")):
            return flask.jsonify({"error": "login required"}), 401
        return flask.redirect("/login?next=" + path)
