"""The dashboards in real headless Chromium against a seeded private PostgreSQL."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import numpy as np
import psycopg
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from dashboards import data
from dashboards.serve import login

from ..conftest import KIOSK

pytestmark = pytest.mark.browser

PAGES = {"/wall": "#wall-map canvas", "/emergency": "table.queue",
         "/traffic": "#tr-slowest .main-svg", "/ingest": "#in-rate .main-svg",
         "/maintenance": "#mt-table #mt-rows, #mt-table #mt-pending, #mt-table #mt-empty", "/replay": "#rp-map canvas"}
BG = np.array([11, 18, 32])


def _pixels(page, png: bytes, scale: int = 4) -> np.ndarray:
    """Decode a PNG screenshot in the browser (2D canvas), downscaled; RGB array."""
    b64 = base64.b64encode(png).decode()
    flat, w, h = page.evaluate("""async ([b64, scale]) => {
        const img = new Image(); img.src = 'data:image/png;base64,' + b64; await img.decode();
        const w = Math.floor(img.width / scale), h = Math.floor(img.height / scale);
        const c = document.createElement('canvas'); c.width = w; c.height = h;
        const g = c.getContext('2d'); g.imageSmoothingEnabled = false;
        g.drawImage(img, 0, 0, w, h);
        return [Array.from(g.getImageData(0, 0, w, h).data), w, h]; }""", [b64, scale])
    return np.asarray(flat, dtype=int).reshape(h, w, 4)[:, :, :3]


def _rendered(page, map_id: str, timeout: float = 60_000) -> None:
    page.wait_for_function(
        f"() => window.citypulse && window.citypulse.rendered && "
        f"window.citypulse.rendered['{map_id}']",
        timeout=timeout)


def test_every_page_loads_without_console_errors(dash_server, page, artifacts):
    login(page, dash_server.url, "operator", "operator")
    for path, selector in PAGES.items():
        page.goto(dash_server.url + path)
        page.wait_for_selector(selector)
        if path in ("/wall", "/replay"):
            _rendered(page, path.strip("/").replace("wall", "wall-map").replace(
                "replay", "rp-map"))
        page.wait_for_timeout(800)
        page.screenshot(path=str(artifacts / f"{path.strip('/')}.png"))
        assert not page.log.errors, f"{path}: {page.log.errors}"
    assert any("/assets/00_deckgl.min.js" in u for u in page.log.requests)


def test_wall_map_canvas_shows_drawn_content(dash_server, page, artifacts):
    page.goto(f"{dash_server.url}/kiosk?token={KIOSK}")
    page.wait_for_selector("#wall-map canvas")
    _rendered(page, "wall-map")
    page.wait_for_timeout(500)
    png = page.locator("#wall-map").screenshot(path=str(artifacts / "wall-map.png"))
    img = _pixels(page, png)
    drawn = np.abs(img - BG).sum(axis=2) > 30
    assert drawn.mean() > 0.25, f"only {drawn.mean():.1%} of the map is drawn"
    colours = {tuple(c) for c in (img[drawn] // 32)}
    assert len(colours) > 10, "the map should show many colours (lake, zones, roads)"
    # the lake (blue) is in the middle of the map
    h, w, _ = img.shape
    centre = img[h // 2 - 5:h // 2 + 5, w // 2 - 5:w // 2 + 5].reshape(-1, 3).mean(axis=0)
    assert centre[2] > centre[0] + 40, f"lake not blue at the centre: {centre}"
    # KPI tiles show the registered sensors
    assert "3,000" in page.inner_text("#wall-tiles")


def test_ingest_page_reads_the_collectors_metrics(dash_server, collector_metrics, page):
    metrics, _url = collector_metrics
    login(page, dash_server.url, "viewer", "viewer")
    page.goto(dash_server.url + "/ingest")
    page.wait_for_function("() => document.querySelector('#in-tiles') && "
                           "document.querySelector('#in-tiles').innerText.includes('MESSAGES')")
    metrics.messages.labels(kind="gateway", source="native").inc(50_000)
    # the next refresh (5 s) shows a non-zero message rate
    page.wait_for_function(
        "() => /MESSAGES \\/ S\\s+[1-9]/.test(document.querySelector('#in-tiles').innerText)",
        timeout=15_000)
    assert "DEAD LETTERS" in page.inner_text("#in-tiles")


def test_ingest_page_shows_each_source(dash_server, collector_metrics, page):
    from citypulse.settings import Settings
    from ingest.sources.hub import SourceHub

    metrics, _url = collector_metrics
    hub = SourceHub(Settings(sources=["chirpstack"]), metrics.registry)
    metrics.messages.labels(kind="chirpstack", source="chirpstack").inc(12)
    hub.m_readings.labels("chirpstack").inc(11)
    hub.m_dead.labels("chirpstack", "unknown_metric").inc(1)
    hub.m_gaps.labels("chirpstack").inc(3)
    hub.m_late.labels("chirpstack").inc(1)
    login(page, dash_server.url, "viewer", "viewer")
    page.goto(dash_server.url + "/ingest")
    page.wait_for_selector("#src-chirpstack", timeout=30_000)
    cells = page.inner_text("#src-chirpstack").split()
    assert cells == ["chirpstack", "12", "11", "1", "2"]  # messages, readings, dead, lost
    assert page.query_selector("#src-native") is not None


def test_kiosk_token_required(dash_server, page):
    resp = page.goto(f"{dash_server.url}/kiosk?token=wrong")
    assert resp.status == 403
    resp = page.goto(f"{dash_server.url}/wall")
    assert "/login" in page.url


def _open_alert_ids(db_url: str) -> list[int]:
    with psycopg.connect(db_url) as conn:
        return [r[0] for r in conn.execute(
            "SELECT id FROM citypulse.alerts WHERE status = 'open' ORDER BY id").fetchall()]


def _status(db_url: str, alert_id: int) -> tuple[str, str | None]:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT status, acknowledged_by FROM citypulse.alerts "
                            "WHERE id = %s", (alert_id,)).fetchone()


def _select(page, alert_id: int) -> None:
    """Click the alert's row until its detail shows (a click before Dash has bound the row's
    callback is lost, so the click is repeated, within the page's default timeout)."""
    page.wait_for_selector("table.queue")
    shown = (f"() => document.querySelector('#em-detail') && "
             f"document.querySelector('#em-detail').innerText.includes('#{alert_id} ')")
    deadline = time.monotonic() + 60
    while True:
        page.locator(f'tr[id*=\'"index":{alert_id}\']').click()
        try:
            page.wait_for_function(shown, timeout=5_000)
            return
        except PlaywrightTimeout:
            if time.monotonic() > deadline:
                raise


def test_severity_badges_use_analytics_colours(dash_server, page):
    import analytics

    colours = analytics.ui_thresholds()["severity_colours"]
    login(page, dash_server.url, "viewer", "viewer")
    page.goto(dash_server.url + "/emergency")
    page.wait_for_selector("table.queue .sev")
    shown = page.evaluate("""() => Object.fromEntries(
        [...document.querySelectorAll('table.queue .sev')].map(
            e => [e.innerText.toLowerCase(), getComputedStyle(e).backgroundColor]))""")
    assert shown
    for sev, colour in shown.items():
        assert colour == "rgb({}, {}, {})".format(*colours[sev])
    _rendered(page, "em-map")
    page.wait_for_selector("#em-map .cp-pulse")
    pulse = page.evaluate("""() => [...document.querySelectorAll('#em-map .cp-pulse')].map(
        e => e.style.getPropertyValue('--c'))""")
    allowed = {"rgb({},{},{})".format(*c) for c in colours.values()}
    assert pulse and set(pulse) <= allowed


def test_viewer_cannot_acknowledge(dash_server, dash_db, page):
    alert_id = _open_alert_ids(dash_db)[-1]
    login(page, dash_server.url, "viewer", "viewer")
    page.goto(dash_server.url + "/emergency")
    _select(page, alert_id)
    page.click("#em-ack")
    page.wait_for_function(
        "() => document.querySelector('#em-msg').innerText.includes('Not allowed')")
    assert _status(dash_db, alert_id) == ("open", None)
    resp = page.request.post(f"{dash_server.url}/api/alerts/{alert_id}/acknowledge",
                             data={"note": "x"}, headers={"Origin": dash_server.url})
    assert resp.status == 403
    assert _status(dash_db, alert_id) == ("open", None)


def test_acknowledge_updates_database_and_queue(dash_server, dash_db, page, artifacts):
    alert_id = _open_alert_ids(dash_db)[0]
    login(page, dash_server.url, "operator", "operator")
    page.goto(dash_server.url + "/emergency")
    _select(page, alert_id)
    _rendered(page, "em-map")
    page.fill("#em-note", "crew on the way")
    page.click("#em-ack")
    page.wait_for_function(
        "() => document.querySelector('#em-msg').innerText.includes('acknowledged')")
    assert _status(dash_db, alert_id) == ("acknowledged", "operator")
    row = page.locator(f'tr[id*=\'"index":{alert_id}\']')
    row.get_by_text("acknowledged by operator").wait_for()
    # the map flew to the alert: its view is centred on the alert now
    with psycopg.connect(dash_db) as conn:
        lon, lat = conn.execute("SELECT lon, lat FROM citypulse.alerts WHERE id = %s",
                                (alert_id,)).fetchone()
    page.wait_for_function(
        f"() => Math.abs(window.citypulse.maps['em-map'].view.longitude - {lon}) < 1e-3",
        timeout=10_000)
    # the audit trail and the evidence chart (readings of the alert's sensor) are shown
    page.get_by_text("acknowledge by operator: crew on the way").wait_for()
    page.wait_for_selector("#em-evidence .scatterlayer .trace")
    page.wait_for_timeout(1500)
    page.screenshot(path=str(artifacts / "emergency-acknowledged.png"))
    with psycopg.connect(dash_db) as conn:
        by = conn.execute("SELECT by, note FROM citypulse.alert_events WHERE alert_id = %s "
                          "AND action = 'acknowledge'", (alert_id,)).fetchone()
    assert by == ("operator", "crew on the way")


def _past_alerts(db_url: str) -> tuple[datetime, int, int]:
    """Two alerts of the replayed past, both resolved now: (first, gone_id, open_id).

    ``gone`` was resolved one minute into the history; ``open`` ran from the first reading
    until now, so it was open at any replayed time.
    """
    import analytics
    from analytics.lifecycle import NewAlert, open_alert

    with psycopg.connect(db_url, autocommit=True) as conn:
        first, _last = data.history_range(conn)
        ids = []
        for name, sev, end in (("gone", "critical", first + timedelta(minutes=1)),
                               ("open", "warning", datetime.now(UTC))):
            a = open_alert(conn, NewAlert(
                rule="replay_test", entity_kind="zone", entity_id=f"replay-{name}-{uuid4()}",
                severity=sev, title=f"replay {name}", started_at=first, lon=121.93, lat=30.9),
                now=first)
            analytics.resolve(conn, a.id, by="tester", now=end)
            ids.append(a.id)
    return first, ids[0], ids[1]


def _marker_ids(state: dict) -> set[int]:
    return {m[3] for m in state["alerts"]}


def test_replay_slider_changes_map_state(dash_server, dash_db, page, artifacts):
    first, gone_id, open_id = _past_alerts(dash_db)
    login(page, dash_server.url, "viewer", "viewer")
    page.goto(dash_server.url + "/replay")
    _rendered(page, "rp-map")
    before = page.evaluate("window.citypulse.lastState['rp-map']")
    # the end of the history: the still-open seeded alerts and the long one, not the gone one
    now_open = set(_open_alert_ids(dash_db))
    assert now_open and now_open <= _marker_ids(before)
    assert open_id in _marker_ids(before) and gone_id not in _marker_ids(before)
    slider = page.locator("#rp-slider")
    box = slider.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.15, box["y"] + box["height"] / 2)
    page.wait_for_function(
        f"() => window.citypulse.lastState['rp-map'].at !== {before['at']!r}", timeout=15_000)
    after = page.evaluate("window.citypulse.lastState['rp-map']")
    assert after["at"] < before["at"]
    assert after["seg"] != before["seg"], "congestion should differ between the two times"
    # alerts open at the replayed time T, not those open now: the seeded alerts started
    # after T, the "gone" one was resolved before T, the long one was open at T
    at = datetime.fromisoformat(after["at"])
    assert at > first + timedelta(minutes=1)
    assert _marker_ids(after) == {open_id}
    page.wait_for_function("() => document.querySelectorAll('#rp-map .cp-pulse').length === 1")
    assert page.get_attribute("#rp-map .cp-pulse", "title") == f"alert {open_id}"
    page.wait_for_timeout(800)
    page.screenshot(path=str(artifacts / "replay-moved.png"))
    # play (10x by default): the replayed time moves forward by itself
    page.click("#rp-play")
    page.wait_for_function(
        f"() => window.citypulse.lastState['rp-map'].at > {after['at']!r}", timeout=15_000)
    assert page.inner_text("#rp-play") == "Pause"
