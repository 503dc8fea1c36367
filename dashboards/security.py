"""Web hardening of the dashboards app: start checks, sessions, Origin check, headers.

In: the Flask server, the Dash app and the settings.  Out: :func:`check_start` refuses the
dev users and the dev secret when ``CITYPULSE_ENV=production`` or a users file is set;
:func:`install` adds

- session lifetime (``session_lifetime_min``, absolute; kiosk sessions excepted) and idle
  timeout (``session_idle_min``), and a ``Secure`` cookie when served over TLS
  (``session_cookie_secure``: auto/always/never);
- an Origin check on every state-changing request (POST/PUT/PATCH/DELETE, Dash callbacks
  included) made with a browser session: the ``Origin`` (else ``Referer``) must be the
  app's own origin or one of ``web_allowed_origins``; requests with an API key and no
  session are exempt (a browser cannot add that header cross-site);
- security headers on every response: a Content-Security-Policy allowing only the app's
  own origin (plus the hashes of Dash's inline scripts), ``X-Content-Type-Options``,
  ``frame-ancestors 'none'``/``X-Frame-Options``, ``Referrer-Policy``, HSTS over TLS.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from urllib.parse import urlsplit

import flask
from flask.sessions import SecureCookieSessionInterface
from werkzeug.security import check_password_hash

from citypulse.settings import ConfigError, Settings
from dashboards import auth

DEV_SECRET = Settings.model_fields["dashboard_secret"].default
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
TOUCH_EVERY_S = 30  # the idle clock in the cookie is refreshed at most this often


def check_start(settings: Settings, users: dict[str, auth.User] | None = None) -> None:
    """ConfigError when a production start would use the dev users, dev secret or no TLS key."""
    strict = settings.env == "production" or settings.users_file is not None
    problems = []
    if strict:
        if settings.users_file is None:
            problems.append("CITYPULSE_USERS_FILE is not set: the built-in dev users "
                            "(admin/admin, ...) are refused in production; write a users "
                            "file (see docs/security.md)")
        if settings.dashboard_secret == DEV_SECRET:
            problems.append("CITYPULSE_DASHBOARD_SECRET is the dev secret: set a random one "
                            "(python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        if settings.users_file is not None:
            if users is None:
                users = auth.load_users(settings.users_file)
            for name, password, _role in auth.DEV_USERS:
                u = users.get(name)
                if u is not None and check_password_hash(u.password_hash, password):
                    problems.append(f"{settings.users_file}: user {name!r} has the dev "
                                    "password; set a real one")
    if settings.web_tls_cert is not None and settings.web_tls_key is None:
        problems.append("CITYPULSE_WEB_TLS_CERT is set without CITYPULSE_WEB_TLS_KEY")
    for path in (settings.web_tls_cert, settings.web_tls_key):
        if path is not None and not path.is_file():
            problems.append(f"TLS file {path} does not exist")
    if problems:
        raise ConfigError("refusing to start the web app:\n  " + "\n  ".join(problems))


class _SessionInterface(SecureCookieSessionInterface):
    """Secure cookie when the request came over TLS (auto), or always/never by setting."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def get_cookie_secure(self, app: flask.Flask) -> bool:
        if self.mode != "auto":
            return self.mode == "always"
        return flask.has_request_context() and flask.request.is_secure


def _origin_of(url: str) -> str:
    p = urlsplit(url)
    return f"{p.scheme}://{p.netloc}".lower() if p.scheme and p.netloc else ""


def csp(script_hashes: list[str]) -> str:
    """The Content-Security-Policy: only the app's own origin (plus Dash's inline scripts)."""
    return "; ".join([
        "default-src 'self'",
        # deck.gl compiles WebAssembly (its loaders): 'wasm-unsafe-eval', never 'unsafe-eval'
        "script-src 'self' 'wasm-unsafe-eval' " + " ".join(script_hashes),
        "style-src 'self' 'unsafe-inline'",  # Dash/React components set inline styles
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])


def install(server: flask.Flask, dash_app, settings: Settings) -> None:
    """Add sessions' limits, the Origin check and the security headers (see module doc)."""
    server.session_interface = _SessionInterface(settings.session_cookie_secure)
    server.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                         SESSION_COOKIE_NAME="citypulse_session",
                         PERMANENT_SESSION_LIFETIME=timedelta(
                             minutes=settings.session_lifetime_min))
    lifetime_s = settings.session_lifetime_min * 60
    idle_s = settings.session_idle_min * 60
    allowed = {_origin_of(o) for o in settings.web_allowed_origins}

    def session_limits():
        if not flask.session.get("user"):
            return None
        now = int(time.time())
        started, seen = flask.session.get("iat", 0), flask.session.get("seen", 0)
        kiosk = flask.session.get("user") == "kiosk"
        if now - seen > idle_s or (not kiosk and now - started > lifetime_s):
            flask.session.clear()  # the guard installed by auth then asks for a login
            flask.g.session_expired = True
        elif now - seen > TOUCH_EVERY_S:
            flask.session["seen"] = now
        return None

    # before auth's guard, so an expired session is already gone when it looks
    server.before_request_funcs.setdefault(None, []).insert(0, session_limits)

    # Dash sets itself up on the first request and marks that done before it is: a second
    # request meanwhile would hash half the inline scripts and the CSP would block the rest
    # for good. The first request of any thread finishes the setup, under a lock, first.
    setup_lock, ready = threading.Lock(), threading.Event()

    def dash_ready():
        if not ready.is_set():
            with setup_lock:
                if not ready.is_set():
                    dash_app._setup_server()
                    ready.set()

    server.before_request_funcs[None].insert(0, dash_ready)

    @server.before_request
    def same_origin():
        if flask.request.method not in UNSAFE_METHODS:
            return None
        if flask.g.get("api_key") is not None:  # a header no cross-site form can send
            return None
        sent = flask.request.headers.get("Origin") or _origin_of(
            flask.request.headers.get("Referer", ""))
        own = _origin_of(flask.request.host_url)
        if sent and sent.lower() in allowed | {own}:
            return None
        return flask.jsonify({"error": f"cross-origin request refused (Origin {sent or 'missing'}"
                                       f", expected {own})"}), 403

    @server.after_request
    def headers(resp: flask.Response) -> flask.Response:
        h = resp.headers
        if ready.is_set():  # hashed per response: pages may add inline scripts as they load
            h.setdefault("Content-Security-Policy", csp(list(dash_app.csp_hashes())))
        else:  # nothing inline is allowed before Dash is set up
            h.setdefault("Content-Security-Policy", csp([]))
        h["X-Content-Type-Options"] = "nosniff"
        h["X-Frame-Options"] = "DENY"
        h["Referrer-Policy"] = "same-origin"
        h["Cross-Origin-Opener-Policy"] = "same-origin"
        if flask.request.is_secure:
            h["Strict-Transport-Security"] = "max-age=31536000"
        if flask.request.path.startswith(("/login", "/api/")):
            h.setdefault("Cache-Control", "no-store")
        return resp


def start_session(user: str, role: str) -> None:
    """Begin a fresh session for ``user`` (old contents dropped: no session fixation)."""
    flask.session.clear()
    now = int(time.time())
    flask.session.update(user=user, role=role, iat=now, seen=now)
    flask.session.permanent = user != "kiosk"
