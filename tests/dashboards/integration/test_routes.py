"""Every route the README and docs/ list is served by the real server, with the documented
content type; bad parameters answer 400 JSON naming the parameter; unknown /api/ paths 404
JSON (never the Dash page); the server refuses to start with dev users in production."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from citypulse import apikeys
from tests.dashboards.integration.conftest import USERS, base_env, users_file
from tests.support import wait_for

ROOT = Path(__file__).resolve().parents[3]
PAGES = {"/wall", "/emergency", "/traffic", "/ingest", "/maintenance", "/replay"}
WEB_PREFIXES = ("/api/", "/dash-static/")
OTHER = {"/login", "/logout", "/kiosk", "/healthz"}
_TOKEN = re.compile(r"`(?:(GET|POST|PUT|DELETE) )?(/[^`\s]*)`")


def documented_routes() -> set[tuple[str, str]]:
    """(method, path) of every web route written in backticks in README.md and docs/*.md."""
    out = set()
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for method, raw in _TOKEN.findall(doc.read_text()):
            path = raw.split("?")[0].rstrip(".,;:")
            if "..." in raw or path.endswith("/"):  # "/api/...", "/api/": a family
                continue
            if path in PAGES | OTHER or path.startswith(WEB_PREFIXES):
                out.add((method or "GET", path))
    return out


def concrete(path: str) -> str:
    """A placeholder (<id>, <a|b>, {name}) replaced by a value of the right shape."""
    path = re.sub(r"<([a-z_]+\|[^>]*)>", lambda m: m.group(1).split("|")[0], path)
    path = re.sub(r"<(?:int:)?[a-z_]*id>", "999999999", path)
    return re.sub(r"<[^>]+>|\{[^}]+\}", "x", path)


def test_docs_list_the_twin_api_and_pages():
    routes = {p for _m, p in documented_routes()}
    assert {"/api/twin/segments", "/api/twin/zones", "/api/twin/od", "/api/twin/lag",
            "/api/twin/city.geojson", "/wall", "/login"} <= routes


def test_every_documented_route_is_served(web):
    s, r = web.login("ben", "127.0.0.6")
    assert r.status_code == 302
    walked = 0
    for method, path in sorted(documented_routes(), key=lambda mp: mp[1] == "/logout"):
        url = web.url + concrete(path)
        r = s.request(method, url, allow_redirects=False, timeout=60, json={})
        ctype = r.headers.get("Content-Type", "")
        where = f"{method} {path} -> {r.status_code} {ctype}"
        if path.startswith("/api/"):
            # served: a JSON answer that is not "no such endpoint" (a viewer may get 403,
            # a key-only endpoint 401, an unknown id 404 from the endpoint itself)
            assert "json" in ctype, where
            assert "no such API endpoint" not in r.text, where
            if method == "GET" and path.startswith("/api/twin/") or path == "/api/state":
                assert r.status_code == 200, where
        elif path.startswith("/dash-static/"):
            assert r.status_code == 200, where
            assert ctype.startswith("application/json" if path.endswith(".json")
                                    else "application/octet-stream"), where
        elif path in PAGES or path == "/login":
            assert r.status_code == 200 and ctype.startswith("text/html"), where
        elif path == "/kiosk":
            assert r.status_code == 403, where  # no token given
        elif path == "/healthz":
            assert r.status_code == 200 and r.json() == {"ok": True}, where
        elif path == "/logout":
            assert r.status_code == 302, where
        walked += 1
    assert walked >= 15


@pytest.mark.parametrize(("path", "param"), [
    ("/api/twin/zones?at=2026-13-45", "at"),
    ("/api/twin/segments?at=%27%20OR%201=1--", "at"),
    ("/api/twin/zones?window=abc", "window"),
    ("/api/twin/zones?window=999", "window"),
    ("/api/twin/segments?format=xml", "format"),
    ("/api/twin/od?hour=yesterday", "hour"),
    ("/api/state?at=2026-13-45", "at"),
])
def test_bad_parameters_answer_400_json_naming_them(web, path, param):
    s, _ = web.login("ben", "127.0.0.6")
    r = s.get(web.url + path, timeout=30)
    assert r.status_code == 400 and r.headers["Content-Type"] == "application/json"
    body = r.json()
    assert body["parameter"] == param and repr(param) in body["error"]


def test_unknown_api_paths_are_json_404_never_the_dash_page(web):
    s, _ = web.login("ben", "127.0.0.6")
    for path in ("/api/nope", "/api/twin/nope", "/api/alerts/1/acknowledge",  # GET on POST
                 "/api/", "/api"):
        r = s.get(web.url + path, timeout=30)
        assert r.status_code in (404, 405) and r.headers["Content-Type"] == "application/json"
        assert "<html" not in r.text.lower()


def test_twin_api_takes_a_reader_key_without_a_session(web):
    import psycopg

    with psycopg.connect(web.db_url, autocommit=True) as conn:
        _i, reader = apikeys.create(conn, "routes-reader", ["api:read"], "test")
        _i, other = apikeys.create(conn, "routes-share", ["share:x"], "test")
    c = web.client()
    r = c.get(web.url + "/api/twin/zones?format=geojson",
              headers={"Authorization": "Bearer " + reader}, timeout=60)
    assert r.status_code == 200 and r.json()["type"] == "FeatureCollection"
    r = c.get(web.url + "/api/twin/zones", headers={"X-API-Key": other}, timeout=30)
    assert r.status_code == 403 and "api:read" in r.json()["error"]


def _start(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "citypulse", "dashboard", "--port", "1"],
                          env=env, capture_output=True, text=True, timeout=120)


def test_production_refuses_dev_users_and_dev_secret(dash_db, tmp_path):
    env = base_env(dash_db, tmp_path)
    del env["CITYPULSE_USERS_FILE"], env["CITYPULSE_DASHBOARD_SECRET"]
    r = _start(env)  # CITYPULSE_ENV=production, nothing configured
    assert r.returncode == 2
    assert "CITYPULSE_USERS_FILE" in r.stderr and "dev secret" in r.stderr
    # a users file (even without CITYPULSE_ENV) with a dev password is refused too
    del env["CITYPULSE_ENV"]
    env["CITYPULSE_USERS_FILE"] = str(users_file(tmp_path / "u.yaml",
                                                 {"admin": ("admin", "admin"), **USERS}))
    env["CITYPULSE_DASHBOARD_SECRET"] = "a-real-secret-0123456789"
    r = _start(env)
    assert r.returncode == 2 and "'admin' has the dev password" in r.stderr


def test_sigterm_stops_the_server_gracefully(dash_db, tmp_path):
    from citypulse.stack import free_port, wait_port

    port = free_port()
    env = base_env(dash_db, tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "citypulse", "dashboard", "--port",
                             str(port)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        wait_port(port, timeout=90)
        wait_for(lambda: len(_children(proc.pid)) >= 2, 60, every=0.1)
        assert len(_children(proc.pid)) == 2  # CITYPULSE_WEB_WORKERS from the settings
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "Handling signal: term" in out and "Shutting down: Master" in out, out
    assert out.rstrip().endswith("dashboards stopped")


def _children(pid: int) -> list[str]:
    return [p for p in os.listdir("/proc") if p.isdigit() and _ppid(p) == pid]


def _ppid(pid: str) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return -1
    return int(stat.rsplit(")", 1)[1].split()[1])
