"""Transforms on small frames: aggregation (grid, zone, time), rounding, pseudonyms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from sharing.datasets import DATASETS
from sharing.transforms import REGISTRY, Context
from sharing.transforms import aggregate as agg

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def _traffic() -> pl.DataFrame:
    return pl.DataFrame({
        "time": [T0, T0 + timedelta(minutes=2), T0 + timedelta(minutes=7), T0],
        "sensor_id": ["a", "b", "a", "c"],
        "lon": [121.9301, 121.9302, 121.9301, 121.96],
        "lat": [30.9001, 30.9002, 30.9001, 30.92],
        "segment_id": ["s1", "s1", "s1", "s2"],
        "vehicle_count": [10.0, 20.0, 5.0, 1.0],
        "speed_kmh": [40.0, 60.0, 30.0, 80.0]})


def test_segment_and_five_minutes():
    ds = DATASETS["readings.traffic"]
    p = agg.Params(space="segment", time="5min")
    out = agg.apply(_traffic(), ds, p, ["time", "segment_id", "vehicle_count", "speed_kmh",
                                        "contributors"], "sensor_id")
    rows = {(r["segment_id"], r["time"]): r for r in out.iter_rows(named=True)}
    s1 = rows[("s1", T0)]
    # vehicle_count is "vehicles passed in the interval" in the catalogue: summed
    assert s1["vehicle_count"] == 30 and s1["speed_kmh"] == 50 and s1["contributors"] == 2
    assert rows[("s1", T0 + timedelta(minutes=5))]["contributors"] == 1
    assert out.columns == ["time", "segment_id", "vehicle_count", "speed_kmh", "contributors"]


def test_grid_cells_report_their_centre():
    ds = DATASETS["readings.traffic"]
    out = agg.apply(_traffic(), ds, agg.Params(space="grid", grid_m=500),
                    ["lon", "lat", "speed_kmh", "contributors"], "sensor_id")
    assert out.height == 2 and sorted(out["contributors"].to_list()) == [1, 2]
    near = out.filter(pl.col("contributors") == 2).row(0, named=True)
    assert abs(near["lon"] - 121.9301) < 0.005 and abs(near["lat"] - 30.9001) < 0.005
    assert near["lon"] != 121.9301  # a cell centre, not a sensor's position


def test_round_and_pseudonymise():
    df = _traffic()
    ctx = Context("lab-a", b"k" * 32)
    r = REGISTRY["round_coords"]
    out = r.apply(df, "lon", r.Params(decimals=2), ctx)
    assert out["lon"].to_list() == [121.93, 121.93, 121.93, 121.96]
    p = REGISTRY["pseudonymise"]
    a = p.apply(df, "sensor_id", p.Params(), ctx)["sensor_id"].to_list()
    b = p.apply(df, "sensor_id", p.Params(), Context("lab-b", b"k" * 32))["sensor_id"].to_list()
    assert a[0] == a[2] != a[1] and len(a[0]) == 16 and not set(a) & set(b)
