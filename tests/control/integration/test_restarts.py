"""Restarts: a broker restart re-delivers (executes once); a worker killed mid-fan-out resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from control import api, records
from control.worker import Worker

from ..conftest import wait_for, wait_status

OP = {"by": "ana", "role": "operator"}


def test_redelivery_after_broker_restart_executes_once(db, ctl_settings, fleet, sims, broker_own):
    s = ctl_settings.model_copy(update={"mqtt_url": broker_own.url})
    dev = fleet.add("pmp-b", "pump")
    fleet.reading("pmp-b", sump_level_m=1.0)
    sim = sims([dev], url=broker_own.url, client_id="sim-pmp-b", delay_s=(2.5, 3.0))
    w = Worker(s)
    stop = threading.Event()
    t = threading.Thread(target=w.run, args=(stop,), daemon=True)
    t.start()
    try:
        rec = api.request(db, s, "pmp-b", "start", **OP)
        wait_status(db, rec["id"], "delivered")
        broker_own.stop()   # while the pump is still starting
        broker_own.start()  # both sessions persist; the worker re-sends what is in flight
        done = wait_status(db, rec["id"], "succeeded", 60)
        assert any(e["action"] == "resend" for e in done["events"]), done["events"]
        assert sim.executions() == {"pmp-b": 1}  # delivered twice, executed once
    finally:
        stop.set()
        t.join(10)


def _worker_proc(settings, log: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "CITYPULSE_DATABASE_URL": settings.database_url,
           "CITYPULSE_MQTT_URL": settings.mqtt_url, "CITYPULSE_TOPIC_PREFIX": settings.topic_prefix,
           "CITYPULSE_COMMANDS_RETRY_AFTER_S": "3", "CITYPULSE_COMMANDS_TICK_S": "0.1"}
    out = open(log, "wb") if log else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", "citypulse", "commands", "run"], env=env,
                            stdout=out, stderr=subprocess.STDOUT if log else subprocess.DEVNULL)


def test_worker_started_before_the_broker_waits_for_it(db, ctl_settings, fleet, sims,
                                                        broker_own, tmp_path):
    broker_own.stop()  # the worker starts first (compose starts everything at once)
    s = ctl_settings.model_copy(update={"mqtt_url": broker_own.url})
    log = tmp_path / "worker.log"
    proc = _worker_proc(s, log)
    try:
        wait_for(lambda: log.read_text().count("not reachable") >= 2, 60,
                 "the worker to log its connection retries")
        assert proc.poll() is None, log.read_text()  # retrying, not dead
        broker_own.start()  # same port
        dev = fleet.add("pmp-late", "pump")
        fleet.reading("pmp-late", sump_level_m=1.0)
        sim = sims([dev], url=broker_own.url, client_id="sim-pmp-late")
        rec = api.request(db, s, "pmp-late", "start", **OP)
        wait_status(db, rec["id"], "succeeded", 60)
        assert sim.executions() == {"pmp-late": 1}
        assert "mqtt: connected to" in log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


def test_worker_killed_mid_fanout_resumes_without_duplicates(db, ctl_settings, fleet, sims):
    devs = [fleet.add(f"pmp-f{i:02d}", "pump", zone_id="zf") for i in range(24)]
    for d in devs:
        fleet.reading(d["device_id"], sump_level_m=1.2)
    fleet.add("pmp-other", "pump", zone_id="elsewhere")
    sim = sims(devs)
    out = api.fleet(db, ctl_settings, "pump", "start", {"zone": "zf"}, rate_per_s=4, **OP)
    assert sorted(out["devices"]) == [d["device_id"] for d in devs]
    proc = _worker_proc(ctl_settings)
    try:
        sent = ("sent", "delivered", "succeeded")
        wait_for(lambda: sum(r["status"] in sent for r in records.listing(
            db, fleet_id=out["fleet_id"])) >= 5, 60, "the fan-out to start")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        rows = records.listing(db, fleet_id=out["fleet_id"])
        assert any(r["status"] == "queued" for r in rows), "killed after the fan-out ended"
        proc = _worker_proc(ctl_settings)
        wait_for(lambda: all(r["status"] == "succeeded" for r in records.listing(
            db, fleet_id=out["fleet_id"])), 90, "every pump of the fleet to succeed")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    assert len(records.listing(db, fleet_id=out["fleet_id"])) == 24
    assert sim.executions() == {d["device_id"]: 1 for d in devs}
    status = db.execute("SELECT status FROM citypulse.command_fleets WHERE id = %s",
                        (out["fleet_id"],)).fetchone()[0]
    assert status == "done"


def test_worker_started_before_the_database_waits_for_it(pg_own, ctl_settings, tmp_path):
    from tests.conftest import fresh_database

    s = ctl_settings.model_copy(update={"database_url": fresh_database(pg_own)})
    pg_own.stop()  # the worker starts first
    log = tmp_path / "worker.log"
    proc = _worker_proc(s, log)
    try:
        wait_for(lambda: log.read_text().count("commands: database not reachable") >= 2, 60,
                 "the worker to log its database connection retries")
        assert proc.poll() is None, log.read_text()  # retrying, not dead
        pg_own.start()
        wait_for(lambda: "commands worker running" in log.read_text(), 60,
                 "the worker to start once the database is up")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
