"""HTTP API (role-checked) and, in real Chromium, an operator starting a flood alert's pumps."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import requests
from psycopg.types.json import Jsonb

from control import records

from ..conftest import wait_for

PUMPS = ("pmp-w1", "pmp-w2", "pmp-w3")


@pytest.fixture(scope="module")
def site(pg, broker, tmp_path_factory):
    """One app per module: Dash registers page callbacks with the first app of a process."""
    import threading
    import uuid

    import psycopg

    from citypulse.settings import Settings
    from control.worker import Worker
    from dashboards.app import create_app
    from dashboards.serve import serve
    from device_sim.actuators import ActuatorSim
    from tests.conftest import fresh_database

    from ..conftest import Fleet

    tmp = tmp_path_factory.mktemp("web")
    settings = Settings(database_url=fresh_database(pg), mqtt_url=broker.url,
                        topic_prefix="t" + uuid.uuid4().hex[:10], spool_dir=tmp / "spool",
                        data_dir=tmp / "data", commands_retry_after_s=3.0, commands_tick_s=0.1,
                        dashboard_secret="test-secret-0123456789")
    conn = psycopg.connect(settings.database_url, autocommit=True)
    fleet = Fleet(conn, settings)
    devs = [fleet.add(p, "pump", zone_id="zf1") for p in PUMPS]
    devs.append(fleet.add("pmp-dry-zone", "pump", zone_id="zone-elsewhere"))
    fleet.add("sig-w1", "signal", zone_id="zf1", segment_id="s-w1")
    for d in devs:
        fleet.reading(d["device_id"], sump_level_m=1.3)
    sim = ActuatorSim(settings.mqtt_url, settings.topic_prefix, devs, delay_s=(0.1, 0.3),
                      telemetry=False)
    worker = Worker(settings)
    stop = threading.Event()
    t = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    t.start()
    alert_id = conn.execute(
        "INSERT INTO citypulse.alerts (rule, entity_kind, entity_id, severity, title, "
        "started_at, zone_id, scope) VALUES ('flood_risk', 'zone', 'zf1', 'critical', "
        "'Flood risk in zf1', %s, 'zf1', %s) RETURNING id",
        (datetime.now(UTC), Jsonb([]))).fetchone()[0]
    app = create_app(settings)
    served = serve(app)
    yield served.url, alert_id, conn
    served.stop()
    app.server.extensions["citypulse"].pool.close()
    stop.set()
    t.join(10)
    sim.close()
    conn.close()


def _session(base: str, user: str) -> requests.Session:
    s = requests.Session()
    s.headers["Origin"] = base  # as a browser sends it (cross-origin POSTs are refused)
    r = s.post(base + "/login", data={"username": user, "password": user, "next": "/wall"},
               allow_redirects=False)
    assert r.status_code == 302
    return s


def test_http_commands_are_role_checked(site):
    base, alert_id, db = site
    viewer = _session(base, "viewer")
    r = viewer.post(base + "/api/commands", json={"device": "pmp-w1", "method": "stop"})
    assert r.status_code == 403 and "may not command" in r.json()["error"]
    assert records.listing(db, device_id="pmp-w1") == []
    op = _session(base, "operator")
    r = op.post(base + "/api/commands", json={"device": "pmp-w1", "method": "bogus"})
    assert r.status_code == 400 and "has no method 'bogus'" in r.json()["error"]
    r = op.post(base + "/api/commands", json={"device": "pmp-dry-zone", "method": "stop",
                                              "alert_id": alert_id})
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    wait_for(lambda: op.get(f"{base}/api/commands/{cid}").json()["status"] == "succeeded",
             30, "the stop command to succeed")
    r = op.post(base + "/api/commands", json={"device": "sig-w1", "method": "set_plan",
                                              "params": {"plan": 3}})
    assert r.status_code == 201 and r.json()["status"] == "pending_approval"
    sig = r.json()["id"]
    assert op.post(f"{base}/api/commands/{sig}/approve").status_code == 403
    r = _session(base, "admin").post(f"{base}/api/commands/{sig}/approve")
    assert r.status_code == 200 and r.json()[0]["approved_by"] == "admin"
    trail = records.get(db, cid)["events"]
    assert {e["alert_id"] for e in trail} == {alert_id}  # every step linked to the alert


@pytest.mark.browser
def test_operator_starts_the_pumps_of_a_flood_alert_in_chromium(site):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect, sync_playwright

    from dashboards.serve import launch, login

    base, alert_id, db = site
    with sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(60_000)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        login(page, base, "operator", "operator")
        page.goto(base + "/emergency")
        for _ in range(5):  # the queue re-renders every few seconds: a click may be lost
            page.click("tr.alert-row")
            try:
                page.wait_for_selector("tr.alert-row.selected", timeout=10_000)
                break
            except PlaywrightTimeout:
                continue
        button = page.get_by_role("button", name="Start the drainage pumps (3 pump)")
        button.click()
        expect(page.locator("#emc-table tr[data-method=start][data-status=succeeded]")).to_have_count(3, timeout=60_000)
        rows = page.locator("#emc-table tr[data-method=start]")
        shown = sorted(rows.nth(i).get_attribute("data-device") for i in range(rows.count()))
        browser.close()
    assert shown == list(PUMPS)  # exactly the alert zone's pumps, each succeeded
    rows = [r for r in records.listing(db, alert_id=alert_id) if r["method"] == "start"]
    assert sorted(r["device_id"] for r in rows) == list(PUMPS)
    assert {r["status"] for r in rows} == {"succeeded"}
    assert {r["requested_by"] for r in rows} == {"operator"}
    assert not errors, errors
