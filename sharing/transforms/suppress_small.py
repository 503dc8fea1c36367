"""Suppression of small counts (k-anonymity threshold for people counts).

A value below ``k`` (including a count of contributing sensors or rows) becomes null, so a
recipient never learns that one or two persons were somewhere.
"""

from __future__ import annotations

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

NAME = "suppress_small"
ROLES = ("measure", "count")


class Params(BaseModel):
    """``k``: smallest value delivered."""

    model_config = ConfigDict(extra="forbid")
    k: int = Field(10, ge=2)


def apply(df: pl.DataFrame, field: str, params: Params, ctx) -> pl.DataFrame:
    """Null every value of ``field`` below ``k``."""
    c = pl.col(field)
    return df.with_columns(pl.when(c < params.k).then(None).otherwise(c).alias(field))
