"""The Flask side of the app: login guard, roles on the action API, static geometry."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

from dashboards import app as app_module


def _login(url: str, user: str):
    import requests

    s = requests.Session()
    s.headers["Origin"] = url  # a browser sends it; cross-origin POSTs are refused
    r = s.post(url + "/login", data={"username": user, "password": user},
               allow_redirects=False)
    assert r.status_code == 302
    return s


def test_everything_needs_a_login(dash_server):
    import requests

    r = requests.get(dash_server.url + "/wall", allow_redirects=False)
    assert r.status_code == 302 and "/login" in r.headers["Location"]
    assert requests.get(dash_server.url + "/dash-static/city.json").status_code == 401
    assert requests.post(dash_server.url + "/api/alerts/1/acknowledge").status_code == 401
    r = requests.post(dash_server.url + "/login", data={"username": "viewer",
                                                       "password": "nope"},
                      headers={"Origin": dash_server.url})
    assert r.status_code == 401


def test_static_geometry_once_and_sensor_positions(dash_server, dash_db):
    s = _login(dash_server.url, "viewer")
    city = s.get(dash_server.url + "/dash-static/city.json").json()
    assert city["segments"] and city["zones"] and city["lake"]
    blob = s.get(dash_server.url + "/dash-static/sensors.bin")
    xy = np.frombuffer(blob.content, dtype="<f4").reshape(-1, 2)
    with psycopg.connect(dash_db) as conn:
        n, lon = conn.execute("SELECT count(*), (array_agg(lon ORDER BY id))[1] "
                              "FROM citypulse.sensors").fetchone()
    assert len(xy) == n == int(blob.headers["X-Sensor-Count"])
    assert abs(xy[0, 0] - lon) < 1e-4


def test_state_is_small_and_aligned_with_the_model(dash_server):
    s = _login(dash_server.url, "viewer")
    r = s.get(dash_server.url + "/api/state")
    st = r.json()
    city = s.get(dash_server.url + "/dash-static/city.json").json()
    assert len(st["seg"]) == len(city["segments"])
    assert len(st["zone_rgb"]) == len(city["zones"])
    assert any(b >= 0 for b in st["seg"]) and st["alerts"] and st["od"]
    city_bytes = len(s.get(dash_server.url + "/dash-static/city.json").content)
    assert len(r.content) < city_bytes / 5


def test_operator_acts_through_the_api_viewer_does_not(dash_server, dash_db):
    with psycopg.connect(dash_db) as conn:
        alert_id = conn.execute("SELECT max(id) FROM citypulse.alerts WHERE status <> "
                                "'resolved'").fetchone()[0]
    viewer = _login(dash_server.url, "viewer")
    assert viewer.post(f"{dash_server.url}/api/alerts/{alert_id}/resolve").status_code == 403
    op = _login(dash_server.url, "operator")
    r = op.post(f"{dash_server.url}/api/alerts/{alert_id}/escalate", json={"note": "call fire"})
    assert r.status_code == 200 and r.json()["by"] == "operator"
    r = op.post(f"{dash_server.url}/api/alerts/{alert_id}/resolve", json={"note": "done"})
    assert r.status_code == 200
    r = op.post(f"{dash_server.url}/api/alerts/{alert_id}/resolve")
    assert r.status_code == 409  # already resolved
    with psycopg.connect(dash_db) as conn:
        status, by, level = conn.execute(
            "SELECT status, resolved_by, escalation_level FROM citypulse.alerts WHERE id = %s",
            (alert_id,)).fetchone()
        audit = conn.execute("SELECT count(*) FROM citypulse.dashboard_audit WHERE "
                             "username = 'operator' AND action = 'resolve'").fetchone()[0]
    assert (status, by, level) == ("resolved", "operator", 1)
    assert audit >= 1


def test_missing_deck_asset_fails_with_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(app_module, "DECK_ASSET", tmp_path / "absent.js")
    with pytest.raises(app_module.AssetsMissing, match="build-assets.sh"):
        app_module.check_assets()
