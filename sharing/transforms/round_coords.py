"""Rounding of coordinates to a number of decimals (3 decimals ~ 100 m, 2 ~ 1 km)."""

from __future__ import annotations

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

NAME = "round_coords"
ROLES = ("lon", "lat")


class Params(BaseModel):
    """``decimals``: decimals kept (0-5)."""

    model_config = ConfigDict(extra="forbid")
    decimals: int = Field(3, ge=0, le=5)


def apply(df: pl.DataFrame, field: str, params: Params, ctx) -> pl.DataFrame:
    """Round ``field`` to ``params.decimals`` decimals."""
    return df.with_columns(pl.col(field).cast(pl.Float64).round(params.decimals))
