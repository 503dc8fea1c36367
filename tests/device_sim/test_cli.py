from __future__ import annotations

import json

import polars as pl
from typer.testing import CliRunner

from citypulse.cli import app
from citypulse.commands import UP_SERVICES

runner = CliRunner()


def test_sim_deploy_writes_a_deployment_and_reports(tmp_path):
    out = tmp_path / "d.parquet"
    r = runner.invoke(app, ["sim", "deploy", "--sensors", "400", "--seed", "3", "--out", str(out)])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output.strip().splitlines()[-1])
    assert rep["sensors"] == 400 and len(rep["kinds"]) == 8 and rep["seconds"] >= 0
    df = pl.read_parquet(out)
    assert df.height == 400 and {"sensor_id", "kind", "lon", "lat", "gateway_id"} <= set(df.columns)


def test_sim_check_and_expected(tmp_path):
    r = runner.invoke(app, ["sim", "check", "accident"])
    assert r.exit_code == 0 and "traffic_accident" in r.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nincidents:\n  - type: gas_leak\n    at: -5\n")
    r = runner.invoke(app, ["sim", "check", str(bad)])
    assert r.exit_code == 2
    dep = tmp_path / "d.parquet"
    runner.invoke(app, ["sim", "deploy", "--sensors", "600", "--out", str(dep)])
    r = runner.invoke(app, ["sim", "expected", "city_day", "--deployment", str(dep), "--start",
                            "2026-11-24T10:00:00+08:00"])
    assert r.exit_code == 0, r.output
    alerts = json.loads(r.output)
    assert [a["incident_type"] for a in alerts][:2] == ["traffic_accident", "crowd_surge"]
    assert alerts[0]["start"] == "2026-11-24T02:02:00+00:00"


def test_demo_service_registered():
    assert ("sim", ["sim", "run", "--demo"]) in UP_SERVICES
