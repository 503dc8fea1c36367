"""``citypulse share ...`` end to end: list, approve, export, verify, receipt."""

from __future__ import annotations

import hashlib
import json

from typer.testing import CliRunner

from citypulse.cli import app


def _run(env: dict, *args: str):
    r = CliRunner().invoke(app, list(args), env=env)
    return r.exit_code, r.stdout


def test_share_commands(share_settings, tmp_path):
    env = {"CITYPULSE_DATABASE_URL": share_settings.database_url,
           "CITYPULSE_DATA_DIR": str(share_settings.data_dir),
           "CITYPULSE_SHARE_SCENARIOS_DIR": str(share_settings.share_scenarios_dir)}
    code, out = _run(env, "share", "scenarios", "--json")
    assert code == 0
    table = {s["name"]: s for s in json.loads(out)["scenarios"]}
    assert table["port_logistics_sg"]["cross_border"]
    assert "logistics.od.trips" in table["port_logistics_sg"]["pending_approval"]
    assert not table["open_data_portal"]["pending_approval"]
    code, out = _run(env, "share", "export", "--scenario", "port_logistics_sg",
                     "--dataset", "readings.logistics", "--format", "csv",
                     "--out", str(tmp_path / "t.csv"))
    assert code == 3 and "needs an approval reference" in out  # refused, evidenced
    code, out = _run(env, "share", "export", "--scenario", "flood_research", "--format",
                     "geojson", "--out", str(tmp_path / "flood"))
    assert code == 0
    lines = [json.loads(ln) for ln in out.splitlines()]
    assert [d["dataset"] for d in lines] == ["readings.water", "readings.traffic", "alerts"]
    water = lines[0]
    blob = (tmp_path / "flood" / "readings.water.geojson").read_bytes()
    assert hashlib.sha256(blob).hexdigest() == water["sha256"]
    assert json.loads(blob)["features"][0]["geometry"]["type"] == "Point"
    code, out = _run(env, "share", "receipt", water["evidence_id"])
    assert code == 0 and json.loads(out)["entry"]["sha256"] == water["sha256"]
    code, out = _run(env, "share", "verify")
    assert code == 0 and json.loads(out)["ok"]
    code, _ = _run(env, "share", "export", "--scenario", "nope", "--out", str(tmp_path / "x"))
    assert code == 2
