"""`citypulse dashboard` as a process: serves the login page; registered for `citypulse up`."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import requests

from citypulse.stack import free_port, wait_port


def test_dashboard_command_serves_and_stops(dash_db):
    port = free_port()
    env = dict(os.environ, CITYPULSE_DATABASE_URL=dash_db)
    proc = subprocess.Popen([sys.executable, "-m", "citypulse", "dashboard", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_port(port, timeout=60)
        r = requests.get(f"http://127.0.0.1:{port}/wall", allow_redirects=False, timeout=10)
        assert r.status_code == 302 and "/login" in r.headers["Location"]
        s = requests.Session()
        s.post(f"http://127.0.0.1:{port}/login", data={"username": "viewer",
                                                      "password": "viewer"}, timeout=10,
               headers={"Origin": f"http://127.0.0.1:{port}"})
        assert s.get(f"http://127.0.0.1:{port}/assets/00_deckgl.min.js",
                     timeout=10).status_code == 200
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode == 0, out
    assert f"127.0.0.1:{port}/wall" in out


def test_registered_for_citypulse_up():
    import citypulse.cli  # noqa: F401 - registers every stage's commands
    from citypulse.commands import UP_SERVICES

    assert ("dashboard", ["dashboard"]) in UP_SERVICES


def test_started_quickly_enough_for_up():
    t0 = time.perf_counter()
    from dashboards.app import check_assets

    check_assets()
    assert time.perf_counter() - t0 < 5
