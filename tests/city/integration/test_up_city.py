"""`citypulse up --city FILE`: the whole service on an imported city (the Helsinki extract).

`up` starts its private PostgreSQL and Mosquitto, imports the file as the active city, and
runs every stage; the demo fleet is deployed on the imported city, registered (the twin
places it on Helsinki's segments and zones) and its readings land, placed on that city.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from citypulse.stack import free_port
from tests.ingest.conftest import wait_until
from tests.production.integration.test_up_stop import kill_leftovers

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_up_runs_the_whole_service_on_an_imported_city(tmp_path, helsinki_pbf):
    data = tmp_path / "up"
    env = {k: v for k, v in os.environ.items()
           if k not in ("CITYPULSE_DATABASE_URL", "CITYPULSE_MQTT_URL")}
    env["CITYPULSE_DASHBOARD_PORT"] = str(free_port())
    logf = tmp_path / "up.log"
    log = open(logf, "w+")
    up = subprocess.Popen([sys.executable, "-m", "citypulse", "up", "--city", helsinki_pbf,
                           "--sensors", "300", "--data-dir", str(data)], cwd=ROOT, env=env,
                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert wait_until(lambda: "started dashboard" in logf.read_text()
                          or up.poll() is not None, 300), logf.read_text()[-3000:]
        text = logf.read_text()
        assert up.poll() is None, text[-3000:]
        assert re.search(r"city +helsinki version 1 active \(1149 segments", text), text[-3000:]
        url = re.search(r"database (postgresql://\S+)", text).group(1)

        def placed_readings() -> int:
            with psycopg.connect(url, autocommit=True) as conn:
                return conn.execute(
                    "SELECT count(DISTINCT r.sensor) FROM citypulse.raw r JOIN "
                    "citypulse.sensor_placement p ON p.sensor = r.sensor "
                    "WHERE p.city_model = 'helsinki@1'").fetchone()[0]

        assert wait_until(lambda: placed_readings() >= 100 or up.poll() is not None, 300), \
            logf.read_text()[-3000:]
        assert up.poll() is None, logf.read_text()[-3000:]
        with psycopg.connect(url, autocommit=True) as conn:
            lon, lat, n = conn.execute("SELECT avg(lon), avg(lat), count(*) FROM "
                                       "citypulse.sensors").fetchone()
            models = {r[0] for r in conn.execute(
                "SELECT DISTINCT city_model FROM citypulse.sensor_placement")}
        assert n >= 300 and 24.9 < lon < 25.0 and 60.1 < lat < 60.2  # the fleet is in Helsinki
        assert models == {"helsinki@1"}
        os.killpg(up.pid, signal.SIGTERM)
        up.wait(120)
        assert "citypulse stopped" in logf.read_text()
    finally:
        kill_leftovers(up, data)
        log.close()
