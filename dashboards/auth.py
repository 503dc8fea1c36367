"""Dashboard users, roles and the login guard (Flask sessions signed with the secret).

In: ``settings.users_file`` (YAML ``users: [{name, role, password_hash}]``; hashes from
``werkzeug.security.generate_password_hash``) or, when unset, the documented dev users
(admin/admin, operator/operator, viewer/viewer).  Out: :func:`install` adds /login,
/logout and /kiosk to a Flask server and refuses every other request without a session.
Roles: ``viewer`` < ``operator`` < ``admin``; :func:`require` checks them server-side.

Machine clients: a request to ``/api/...``, ``/sta/...`` or ``/ngsi-ld/...`` carrying
``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` is authenticated by
:func:`citypulse.apikeys.verify` (no session needed); the key is in ``flask.g.api_key``.
The standard APIs (``/sta/``, ``/ngsi-ld/``) also take HTTP Basic with a user of the users
file (``flask.g.basic_user``; failures count in the login throttle and are audited), and
answer 401 with ``WWW-Authenticate: Basic`` when no credential comes.  A view that serves keys checks them with
:func:`require_scope` (key only) or :func:`require_read` (a session, or a key with
``api:read``).  A key-authenticated request whose view checked neither is answered 403.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from pathlib import Path

import flask
import yaml
from werkzeug.security import check_password_hash, generate_password_hash

from citypulse.apikeys import KeyInfo
from citypulse.settings import ConfigError

log = logging.getLogger(__name__)

ROLES = ("viewer", "operator", "admin")
DEV_USERS = (("admin", "admin", "admin"), ("operator", "operator", "operator"),
             ("viewer", "viewer", "viewer"))
KEY_PREFIXES = ("/api/", "/sta/", "/ngsi-ld/")  # paths that take API keys
STANDARD_PREFIXES = ("/sta/", "/ngsi-ld/")      # ... and HTTP Basic
BASIC_CACHE_S = 60  # a verified Basic credential is not re-hashed for this long
OPEN_PATHS = frozenset({"/login", "/logout", "/kiosk", "/healthz", "/_favicon.ico",
                        "/favicon.ico"})


@dataclass(frozen=True)
class User:
    """A dashboard user: name, role and password hash."""

    name: str
    role: str
    password_hash: str


def load_users(path: Path | None) -> dict[str, User]:
    """Users by name from the YAML file, or the dev users when ``path`` is None.

    A broken file raises :class:`~citypulse.settings.ConfigError` naming the file, the
    line or user, and the fix.
    """
    if path is None:
        return {n: User(n, r, generate_password_hash(p)) for n, p, r in DEV_USERS}
    fix = ("write users: [{name: ana, role: operator, password_hash: ...}] with hashes from "
           "python -c 'from werkzeug.security import generate_password_hash as g; "
           "print(g(input()))'")
    try:
        doc = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the users file ({exc.strerror}); "
                          "check CITYPULSE_USERS_FILE") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{line}: not valid YAML ({getattr(exc, 'problem', exc)}); "
                          f"{fix}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("users", []), list):
        raise ConfigError(f"{path}: expected a mapping with a 'users' list; {fix}")
    users = {}
    for i, entry in enumerate(doc.get("users", []), 1):
        if not isinstance(entry, dict) or not entry.get("name") or not entry.get(
                "password_hash"):
            raise ConfigError(f"{path}: user #{i} needs name and password_hash; {fix}")
        role = entry.get("role", "viewer")
        if role not in ROLES:
            raise ConfigError(f"{path}: user {entry.get('name')!r} has unknown role {role!r}; "
                              f"use one of {ROLES}")
        if not str(entry["password_hash"]).startswith(("scrypt:", "pbkdf2:")):
            raise ConfigError(f"{path}: user {entry['name']!r}: password_hash is not a "
                              f"werkzeug hash (never a plain password); {fix}")
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
    """(user name, role) of the current request's session (none for an API-key request)."""
    if flask.g.get("api_key") is not None:  # a key never borrows a browser session's role
        return None, None
    basic = flask.g.get("basic_user")
    if basic is not None:
        return basic.name, basic.role
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
            audit: Callable[[str, str, dict], None] | None = None,
            verify_key: Callable[[str], KeyInfo | None] | None = None,
            throttle=None) -> None:
    """Add /login, /logout, /kiosk and the guard that requires a session elsewhere.

    ``audit(user, action, detail)`` records every login attempt (action ``login``, detail
    ``outcome`` ok / bad_password / unknown_user / throttled / locked, ``addr``), logout
    and kiosk entry.  ``throttle`` (a :class:`dashboards.throttle.Throttle`) refuses
    attempts with 429 and Retry-After.  ``verify_key(secret)`` (e.g. ``apikeys.verify``
    on a pooled connection) enables API keys on ``/api/...``; without it keys are refused.
    """
    from dashboards.security import start_session

    def record(user: str, action: str, **detail) -> None:
        detail["addr"] = flask.request.remote_addr
        detail["agent"] = flask.request.user_agent.string[:200]
        log.info("%s %s %s", action, user, detail.get("outcome", ""))
        if audit:
            audit(user[:100], action, detail)

    def page(error: str, nxt: str, status: int, retry: float | None = None,
             step: float | None = None):
        resp = flask.make_response(
            _LOGIN_HTML.format(error=escape(error), next=escape(nxt)), status)
        if retry is not None:
            resp.headers["Retry-After"] = str(max(1, int(retry + 0.999)))
            resp.headers["X-Retry-After-Seconds"] = f"{retry:.3f}"
            if step is not None:
                resp.headers["X-Throttle-Delay-Seconds"] = f"{step:g}"
        return resp

    @server.route("/login", methods=["GET", "POST"])
    def login():
        nxt = flask.request.values.get("next", "/wall")
        if not nxt.startswith("/") or nxt.startswith("//") or "\\" in nxt:
            nxt = "/wall"
        if flask.request.method != "POST":
            return page("", nxt, 200)
        name = flask.request.form.get("username", "")[:100]
        addr = flask.request.remote_addr or "?"
        refusal = throttle.check(name, addr) if throttle else None
        if refusal is not None:
            record(name, "login", outcome=refusal.reason, key=refusal.key,
                   retry_after_s=round(refusal.retry_after_s, 3))
            msg = ("too many failed logins: locked" if refusal.reason == "locked"
                   else "too many failed logins: wait")
            return page(f"{msg} {int(refusal.retry_after_s + 0.999)} s", nxt, 429,
                        refusal.retry_after_s, refusal.step_s)
        user = authenticate(users, name, flask.request.form.get("password", ""))
        if user is None:
            if throttle:
                throttle.failed(name, addr)
            record(name, "login", outcome="unknown_user" if name not in users
                   else "bad_password")
            return page("wrong user or password", nxt, 401)
        if throttle:
            throttle.succeeded(name)
        start_session(user.name, user.role)
        record(user.name, "login", outcome="ok", role=user.role)
        return flask.redirect(nxt)

    @server.route("/logout", methods=["GET", "POST"])
    def logout():
        user = flask.session.get("user")
        flask.session.clear()
        if user:
            record(user, "logout", outcome="ok")
        return flask.redirect("/login")

    @server.route("/kiosk")
    def kiosk():
        token = flask.request.args.get("token", "")
        addr = flask.request.remote_addr or "?"
        refusal = throttle.check(None, addr) if throttle else None
        if refusal is not None:
            record("kiosk", "kiosk", outcome=refusal.reason)
            return "too many bad kiosk tokens from this address", 429, {
                "Retry-After": str(max(1, int(refusal.retry_after_s + 0.999)))}
        if not kiosk_token or not hmac.compare_digest(token.encode(), kiosk_token.encode()):
            if throttle:
                throttle.failed(None, addr)
            record("kiosk", "kiosk", outcome="bad_token")
            return "bad kiosk token", 403
        start_session("kiosk", "viewer")
        record("kiosk", "kiosk", outcome="ok")
        return flask.redirect("/wall")

    basic_ok: dict[str, tuple[User, float]] = {}

    def basic_auth(path: str):
        """None when the request carries no Basic credential, else a refusal or ok."""
        cred = flask.request.authorization
        if cred is None or cred.type != "basic" or not path.startswith(STANDARD_PREFIXES):
            return None
        name, password = (cred.username or "")[:100], cred.password or ""
        digest = hashlib.sha256(f"{name}\0{password}".encode()).hexdigest()
        now = time.monotonic()
        hit = basic_ok.get(digest)
        if hit is not None and hit[1] > now:
            flask.g.basic_user = hit[0]
            return False
        addr = flask.request.remote_addr or "?"
        refusal = throttle.check(name, addr) if throttle else None
        if refusal is not None:
            record(name, "basic_auth", outcome=refusal.reason)
            return flask.jsonify({"error": "too many failed logins: wait"}), 429, {
                "Retry-After": str(max(1, int(refusal.retry_after_s + 0.999)))}
        user = authenticate(users, name, password)
        if user is None:
            if throttle:
                throttle.failed(name, addr)
            record(name, "basic_auth", outcome="unknown_user" if name not in users
                   else "bad_password")
            return flask.jsonify({"error": "wrong user or password"}), 401, {
                "WWW-Authenticate": 'Basic realm="citypulse"'}
        if len(basic_ok) > 1000:
            basic_ok.clear()
        basic_ok[digest] = (user, now + BASIC_CACHE_S)
        flask.g.basic_user = user
        return False

    @server.before_request
    def guard():
        path = flask.request.path
        if path in OPEN_PATHS or path.startswith("/assets/"):
            return None
        secret = presented_key() if path.startswith(KEY_PREFIXES) else None
        if secret is not None:
            info = verify_key(secret) if verify_key else None
            if info is None:
                return flask.jsonify({"error": "invalid, revoked or expired API key"}), 401
            flask.g.api_key = info
            flask.g.scope_checked = False
            return None
        basic = basic_auth(path)
        if basic is not None:
            return None if basic is False else basic
        if flask.session.get("user"):
            return None
        if path.startswith(STANDARD_PREFIXES) or path in ("/sta", "/ngsi-ld"):
            return flask.jsonify({"error": "login required: a session, HTTP Basic or an "
                                           "API key"}), 401, {
                "WWW-Authenticate": 'Basic realm="citypulse"'}
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
