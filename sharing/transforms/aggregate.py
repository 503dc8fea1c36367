"""Aggregation of a dataset in space (zone, segment, grid cell) and time (5 min, hour).

Rows are grouped by the time bucket, the space key and the delivered descriptive fields;
measures are combined as the dataset says (mean or sum); ``contributors`` counts the
distinct sources (sensors, trucks) or rows behind each output row.  Identifiers never
survive aggregation.  A grid cell is reported by its centre in ``lon``/``lat``.
"""

from __future__ import annotations

import math
from typing import Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from sharing.datasets import CONTRIBUTORS, Dataset

NAME = "aggregate"
_EVERY = {"5min": "5m", "hour": "1h"}
_M_PER_DEG = 111_320.0


class Params(BaseModel):
    """``space``: zone | segment | grid (``grid_m`` metres); ``time``: 5min | hour."""

    model_config = ConfigDict(extra="forbid")
    space: Literal["zone", "segment", "grid"] | None = None
    time: Literal["5min", "hour"] | None = None
    grid_m: int = Field(500, ge=50, le=50_000)


def space_key(ds: Dataset, params: Params) -> list[str]:
    """Fields the space aggregation groups on (fetched even when not delivered)."""
    if params.space == "grid":
        return ["lon", "lat"]
    if params.space == "zone":
        return ["zone_id"] if ds.field("zone_id") else []
    if params.space == "segment":
        return ["segment_id"] if ds.field("segment_id") else []
    return []


def _grid(df: pl.DataFrame, size_m: int) -> pl.DataFrame:
    dy = size_m / _M_PER_DEG
    lat_c = ((pl.col("lat") / dy).floor() + 0.5) * dy
    dx = pl.lit(dy) / (lat_c * (math.pi / 180)).cos()
    return df.with_columns(lat=lat_c, lon=((pl.col("lon") / dx).floor() + 0.5) * dx)


def apply(df: pl.DataFrame, ds: Dataset, params: Params, delivered: list[str],
          source_id: str | None) -> pl.DataFrame:
    """Aggregate ``df`` and return only the ``delivered`` columns (plus nothing else)."""
    if params.time:
        df = df.with_columns(pl.col("time").dt.truncate(_EVERY[params.time]))
    if params.space == "grid":
        df = _grid(df, params.grid_m)
    keys = (["time"] if "time" in delivered else []) + space_key(ds, params)
    measures = []
    for name in delivered:
        f = ds.field(name)
        if name in keys or f is None:
            continue
        if f.role == "measure":
            c = pl.col(name)
            measures.append(c.sum() if f.agg == "sum" else c.mean())
        elif f.role in ("space", "text") and params.space is None:
            keys.append(name)
    count = (pl.col(source_id).n_unique() if source_id else pl.len()).cast(pl.Int64)
    out = df.group_by(keys, maintain_order=True).agg(*measures, count.alias(CONTRIBUTORS))
    return out.select([c for c in delivered if c in out.columns])
