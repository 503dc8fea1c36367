"""Session lifetime and idle timeout (dashboards/security.py), with signed session cookies."""

from __future__ import annotations

import time

import pytest

from citypulse.settings import Settings


@pytest.fixture(scope="module")
def app(dash_settings):
    from dashboards.app import create_app

    settings = Settings(**{**dash_settings.model_dump(), "session_idle_min": 5,
                           "session_lifetime_min": 60})
    a = create_app(settings)
    yield a.server
    a.server.extensions["citypulse"].pool.close()


def _client_with(server, **session):
    c = server.test_client()
    c.environ_base["HTTP_ORIGIN"] = "http://localhost"
    with c.session_transaction() as s:
        s.update(session)
    return c


def test_fresh_session_works_idle_and_old_ones_end(app):
    now = int(time.time())
    ok = _client_with(app, user="viewer", role="viewer", iat=now - 600, seen=now - 60)
    assert ok.get("/api/state").status_code == 200
    idle = _client_with(app, user="viewer", role="viewer", iat=now - 600, seen=now - 301)
    assert idle.get("/api/state").status_code == 401
    r = idle.get("/wall")  # and the session is gone, not just refused once
    assert r.status_code == 302 and "/login" in r.headers["Location"]
    old = _client_with(app, user="viewer", role="viewer", iat=now - 3601, seen=now - 10)
    assert old.get("/api/state").status_code == 401
    # a kiosk wall has no absolute limit (it is viewer-only and re-opened by its token)
    kiosk = _client_with(app, user="kiosk", role="viewer", iat=now - 99_999, seen=now - 10)
    assert kiosk.get("/api/state").status_code == 200


def test_login_sets_a_permanent_cookie_with_the_lifetime(app):
    c = app.test_client()
    r = c.post("/login", data={"username": "viewer", "password": "viewer"},
               headers={"Origin": "http://localhost"})
    assert r.status_code == 302
    cookie = r.headers["Set-Cookie"].lower()
    assert "expires=" in cookie and "httponly" in cookie and "secure" not in cookie  # http
