import json
import os
import subprocess
import sys

import psycopg


def _load(db_url, path):
    r = subprocess.run([sys.executable, "-m", "citypulse", "registry", "load", str(path),
                        "--database-url", db_url], capture_output=True, text=True,
                       env=dict(os.environ), timeout=120)
    return r.returncode, r.stdout, r.stderr


def test_registry_load_csv_is_idempotent(db_url, tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("sensor_id,kind,lon,lat,gateway_id,zone\ns1,traffic,121.9,30.9,,z1\ns2,fire,121.8,30.8,gw1,z2\n")
    rc, out, err = _load(db_url, p)
    assert rc == 0, err
    assert json.loads(out.strip().splitlines()[-1])["inserted"] == 2
    rc, out, _ = _load(db_url, p)
    assert json.loads(out.strip().splitlines()[-1]) | {"file": ""} == {
        "file": "", "sensors": 2, "inserted": 0, "updated": 0, "unchanged": 2,
        "placed": 0, "unplaceable": 0, "unplaceable_sensors": []}
    p.write_text("sensor_id,kind,lon,lat,gateway_id,zone\ns1,traffic,121.9,30.9,gw2,z1\n")
    rc, out, _ = _load(db_url, p)
    assert json.loads(out.strip().splitlines()[-1])["updated"] == 1
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT sensor_id, kind, gateway_id, props FROM citypulse.sensors ORDER BY 1").fetchall()
    assert rows == [("s1", "traffic", "gw2", {"zone": "z1"}), ("s2", "fire", "gw1", {"zone": "z2"})]


def test_registry_load_error_names_row_and_column(db_url, tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("sensor_id,kind,lon,lat\ns1,traffic,1,2\ns2,traffic,1,north\n")
    rc, _, err = _load(db_url, p)
    assert rc == 2 and "row 2" in err and "'lat'" in err


def test_simulator_deployment_parquet_loads(db_url, tmp_path):
    from device_sim import deploy

    df = deploy.deploy(500, seed=1)
    path = deploy.write(df, tmp_path / "deployment.parquet")
    rc, out, err = _load(db_url, path)
    assert rc == 0, err
    assert json.loads(out.strip().splitlines()[-1])["inserted"] == df.height
    with psycopg.connect(db_url) as conn:
        n, gw, props = conn.execute(
            "SELECT count(*), count(gateway_id), count(*) FILTER (WHERE props ? 'zone_id') "
            "FROM citypulse.sensors").fetchone()
    assert n == df.height and gw == df["gateway_id"].drop_nulls().len() and props == n
