"""The share API through the real app: keys, scopes, recipients, rate limits, evidence;
the data officer's endpoints refuse anyone but an admin."""

from __future__ import annotations

import hashlib
import json
import shutil

import dash
import flask
import psycopg
import pytest
import requests

from citypulse.settings import Settings
from sharing import evidence
from sharing.policy import SCENARIOS_DIR
from tests.sharing.conftest import TWO_RECIPIENTS


@pytest.fixture(scope="module")
def app_env(share_db, share_data_dir, tmp_path_factory):
    from citypulse import apikeys
    from dashboards.app import create_app
    from dashboards.serve import serve

    base = tmp_path_factory.mktemp("share-http")
    scen = base / "scenarios"
    shutil.copytree(SCENARIOS_DIR, scen)
    (scen / "two_labs.yaml").write_text(TWO_RECIPIENTS)
    settings = Settings(database_url=share_db, data_dir=share_data_dir,
                        dashboard_secret="test-secret-0123456789", share_scenarios_dir=scen)
    with psycopg.connect(share_db, autocommit=True) as conn:
        keys = {name: apikeys.create(conn, name, scopes, "test")[1] for name, scopes in (
            ("tongji-flood-lab", ["share:flood_research"]),
            ("open-data-portal", ["share:open_data_portal"]),
            ("lab-a", ["share:two_labs"]),
            ("nosy", ["share:*"]))}
    app = create_app(settings)
    served = serve(app)
    yield served.url, keys, settings, app
    served.stop()


def _login(url: str, user: str) -> requests.Session:
    s = requests.Session()
    s.headers["Origin"] = url  # state-changing requests with a session: same origin only
    r = s.post(url + "/login", data={"username": user, "password": user},
               allow_redirects=False)
    assert r.status_code == 302
    return s


def test_recipient_gets_its_scenario_with_evidence(app_env, share_conn):
    url, keys, settings, _ = app_env
    r = requests.get(f"{url}/api/share/flood_research/readings.water?format=csv",
                     headers={"Authorization": f"Bearer {keys['tongji-flood-lab']}",
                              "X-Request-Id": "req-123"})
    assert r.status_code == 200, r.text
    assert r.text.splitlines()[0] == "time,sensor_id,lon,lat,zone_id,level_m,rain_mm_h"
    digest = hashlib.sha256(r.content).hexdigest()
    assert r.headers["X-Content-SHA256"] == digest
    rec = evidence.get(share_conn, r.headers["X-Evidence-Id"])
    assert rec["sha256"] == digest and rec["byte_count"] == len(r.content)
    assert rec["recipient"] == "tongji-flood-lab" and rec["channel"] == "http"
    assert rec["request_id"] == "req-123" and rec["row_count"] == int(r.headers["X-Rows"]) > 0
    # the same policy function: an unlisted dataset field never appears
    assert "segment_id" not in r.text and "battery_pct" not in r.text


def test_a_key_cannot_read_another_scenario(app_env):
    url, keys, _, _ = app_env
    h = {"X-API-Key": keys["tongji-flood-lab"]}
    r = requests.get(f"{url}/api/share/open_data_portal/twin.zone_density", headers=h)
    assert r.status_code == 403 and "open_data_portal" in r.json()["error"]
    r = requests.get(f"{url}/api/share/open_data_portal/twin.zone_density",
                     headers={"X-API-Key": keys["nosy"]})  # scope share:* but no recipient
    assert r.status_code == 403 and "not a recipient" in r.json()["error"]
    assert requests.get(f"{url}/api/share/flood_research/alerts").status_code == 401
    r = requests.get(f"{url}/api/share/flood_research/alerts",
                     headers={"X-API-Key": keys["tongji-flood-lab"] + "x"})
    assert r.status_code == 401
    r = requests.get(f"{url}/api/share/flood_research/registry", headers=h)
    assert r.status_code == 404  # the scenario does not share the registry


def test_rate_limit_per_recipient_key(app_env):
    url, keys, _, _ = app_env
    h = {"X-API-Key": keys["lab-a"]}
    codes = [requests.get(f"{url}/api/share/two_labs/registry?format=geojson",
                          headers=h).status_code for _ in range(4)]
    assert codes[:3] == [200, 200, 200] and codes[3] == 429


def test_viewer_cannot_change_policy_admin_can(app_env, share_conn):
    url, _, _, _ = app_env
    body = {"scenario": "port_logistics_sg", "reference": "SC-2026-7", "route":
            "standard_contract"}
    for user in ("viewer", "operator"):
        s = _login(url, user)
        assert s.post(url + "/api/sharing/approvals", json=body).status_code == 403
        assert s.post(url + "/api/sharing/approvals/port_logistics_sg/revoke").status_code == 403
        assert s.get(url + "/api/sharing/status").status_code == 403
    assert requests.post(url + "/api/sharing/approvals", json=body).status_code == 401
    assert not share_conn.execute("SELECT 1 FROM citypulse_share.approvals WHERE reference = "
                                  "'SC-2026-7'").fetchone()
    admin = _login(url, "admin")
    r = admin.post(url + "/api/sharing/approvals", json=body)
    assert r.status_code == 200 and r.json()["by"] == "admin"
    status = admin.get(url + "/api/sharing/status").json()
    port = next(s for s in status["scenarios"] if s["name"] == "port_logistics_sg")
    assert port["approval_ref"] == "SC-2026-7" and not port["pending_approval"]
    assert status["policy_log"] and status["chain"]["ok"]
    assert admin.post(url + "/api/sharing/approvals/port_logistics_sg/revoke").json()["revoked"]
    audit = share_conn.execute("SELECT action FROM citypulse.dashboard_audit WHERE username = "
                               "'admin' AND action LIKE 'share_%' ORDER BY at").fetchall()
    assert [a[0] for a in audit][-2:] == ["share_approve", "share_revoke"]


def test_sharing_page_is_for_admins_only(app_env):
    app = app_env[3]
    page = next(p for p in dash.page_registry.values() if p["path"] == "/sharing")
    with app.server.test_request_context("/sharing"):
        for role in ("viewer", "operator"):
            flask.session["user"], flask.session["role"] = role, role
            out = json.dumps(page["layout"]().to_plotly_json(), default=str)
            assert "for administrators" in out and "port_logistics_sg" not in out
        flask.session["user"], flask.session["role"] = "admin", "admin"
        out = json.dumps(page["layout"]().to_plotly_json(), default=str)
    assert "port_logistics_sg" in out and "needs_approval" in out and "Policy log" in out
    assert "Recent transfers" in out and "gateway_id" in out  # forbidden fields are shown
