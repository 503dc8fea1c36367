"""Formulas every stage shares, defined once: congestion index and people density.

In: numbers, numpy arrays, pandas/polars series or polars expressions (the arithmetic is
the same for all); Out: the same kind.  The SQL forms (``*_SQL``) are the same formulas for
the twin's aggregation queries, formatted with column names.
"""

from __future__ import annotations

from typing import Any


def congestion_index(speed_kmh: Any, free_flow_kmh: Any) -> Any:
    """``1 - speed / free-flow speed``, clipped to [0, 1] (0 free flow, 1 standstill)."""
    x = 1 - speed_kmh / free_flow_kmh
    if hasattr(x, "clip"):
        return x.clip(0, 1)
    return min(1.0, max(0.0, x))


def density_per_1000m2(people: Any, area_m2: Any) -> Any:
    """People per 1,000 m2 of ``area_m2`` (the unit of the zones' density limits)."""
    return people / area_m2 * 1000


CONGESTION_SQL = "greatest(0, least(1, 1 - {speed} / {free_flow}))"
DENSITY_SQL = "1000 * {people} / NULLIF({area}, 0)"
