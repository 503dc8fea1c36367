from __future__ import annotations

import os
import subprocess
import sys

import polars as pl

from device_sim.deploy import write


def test_deployment_loads_with_registry_load(db, db_url, deployment, tmp_path):
    path = write(deployment, tmp_path / "dep.parquet")
    r = subprocess.run([sys.executable, "-m", "citypulse", "registry", "load", str(path)],
                       env=dict(os.environ, CITYPULSE_DATABASE_URL=db_url),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    n, gws, direct = db.execute(
        "SELECT count(*), count(DISTINCT gateway_id), count(*) FILTER (WHERE gateway_id IS NULL)"
        " FROM citypulse.sensors").fetchone()
    assert n == deployment.height
    assert direct == deployment["gateway_id"].null_count()
    assert gws == deployment["gateway_id"].n_unique() - 1
    seg, zone = db.execute(
        "SELECT props->>'segment_id', props->>'zone_id' FROM citypulse.sensors "
        "WHERE sensor_id = 'trf-000000'").fetchone()
    row = deployment.row(by_predicate=pl.col("sensor_id") == "trf-000000", named=True)
    assert (seg, zone) == (row["segment_id"], row["zone_id"])
