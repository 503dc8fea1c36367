"""`citypulse twin run` as a process: keeps the aggregates current, stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from tests.support import wait_for
from twin import build_city

SEG = "N3.00>N3.02"


def test_worker_process_aggregates_and_stops(twin_db, db_url):
    city = build_city()
    sid = twin_db.sensor("tr-w", "traffic", *city.point_along(SEG, 0.5))
    env = dict(os.environ, CITYPULSE_DATABASE_URL=db_url, CITYPULSE_TWIN_INTERVAL_S="0.5")
    proc = subprocess.Popen([sys.executable, "-m", "citypulse", "twin", "run"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        minute = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
        # within one pass, or at most the 30 s trailing recompute when a minute turns over
        deadline = time.monotonic() + 60  # both waits together
        placed = wait_for(lambda: twin_db.conn.execute(  # the worker places it
            "SELECT segment_id FROM citypulse.sensor_placement WHERE sensor = %s",
            (sid,)).fetchone(), deadline - time.monotonic(), every=0.2)
        assert placed == (SEG,)
        twin_db.readings([(minute + timedelta(seconds=5), sid,
                           {"vehicle_count": 7, "speed_kmh": 33, "occupancy_pct": 9})])
        row = wait_for(lambda: twin_db.conn.execute(
            "SELECT flow_veh_h, speed_kmh FROM citypulse.twin_segment_1m "
            "WHERE segment_id = %s AND bucket = %s", (SEG, minute)).fetchone(),
            deadline - time.monotonic(), every=0.2)
        assert row == (420.0, 33.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out.decode()[-2000:]
