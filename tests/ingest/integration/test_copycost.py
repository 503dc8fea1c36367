"""``citypulse bench copycost`` on a real private PostgreSQL: every table gets every row."""

import json

import pytest
from typer.testing import CliRunner

from citypulse.cli import app

pytestmark = pytest.mark.integration


def test_copycost_writes_each_table_and_reports_its_cpu():
    r = CliRunner().invoke(app, ["bench", "copycost", "--rows", "20000", "--batch", "5000",
                                 "--rounds", "2"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output.strip().splitlines()[-1])
    tables = {"bare", "wide", "unique", "partitioned", "brin", "store"}
    assert set(out["us_per_row"]) == tables and set(out["median_us_per_row"]) == tables
    assert all(len(v) == 2 for v in out["us_per_row"].values())
    assert out["ratio_to_bare"]["bare"] in (1.0, None) and out["backend"] in ("postgres",
                                                                              "timescale")
