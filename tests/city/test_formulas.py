"""The shared formulas: one definition, the same numbers in Python, polars and the twin's SQL."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from citypulse.formulas import (
    CONGESTION_SQL,
    DENSITY_SQL,
    congestion_index,
    density_per_1000m2,
)


def test_congestion_index_everywhere_the_same():
    assert congestion_index(6.0, 50.0) == pytest.approx(0.88)
    assert congestion_index(60.0, 50.0) == 0.0  # faster than free flow: no congestion
    assert list(congestion_index(np.array([0.0, 25.0]), 50.0)) == [1.0, 0.5]
    df = pl.DataFrame({"s": [6.0, 60.0], "f": [50.0, 50.0]})
    out = df.select(congestion_index(pl.col("s"), pl.col("f")).alias("c"))["c"].to_list()
    assert out == pytest.approx([0.88, 0.0])


def test_density_and_the_twin_sql_use_the_same_formulas():
    assert density_per_1000m2(40_000, 10_000) == 4000.0
    from twin import flows

    assert CONGESTION_SQL.format(speed="a.speed", free_flow="s.free_flow_kmh") in flows._SEGMENTS
    assert DENSITY_SQL.format(people="j.people", area="z.area_m2") in flows._ZONES
