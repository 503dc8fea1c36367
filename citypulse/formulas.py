"""Traffic and crowd formulas, the one place each is written (twin, analytics, dashboards).

In: numbers, polars expressions, or SQL expressions (as text).  Out: the same formula in
that form.  Congestion index = 1 - speed / free-flow speed, clipped to [0, 1]; people
density = persons per 1,000 m2.
"""

from __future__ import annotations

import polars as pl

DEFAULT_FREE_FLOW_KMH = 50.0  # a road segment's free-flow speed when nothing says otherwise
DENSITY_AREA_M2 = 1000.0      # density unit: persons per this many square metres


def congestion_index(speed_kmh: float, free_flow_kmh: float) -> float:
    """1 - speed / free flow, clipped to [0, 1]."""
    return max(0.0, min(1.0, 1.0 - speed_kmh / free_flow_kmh))


def congestion_index_expr(speed: pl.Expr, free_flow: pl.Expr) -> pl.Expr:
    """:func:`congestion_index` over polars columns."""
    return (1 - speed / free_flow).clip(0, 1)


def congestion_index_sql(speed: str, free_flow: str) -> str:
    """:func:`congestion_index` as a SQL expression over two column expressions."""
    return f"greatest(0, least(1, 1 - {speed} / {free_flow}))"


def density(people: float, area_m2: float) -> float:
    """Persons per 1,000 m2."""
    return people / area_m2 * DENSITY_AREA_M2


def density_expr(people: pl.Expr, area_m2: pl.Expr) -> pl.Expr:
    """:func:`density` over polars columns."""
    return people / area_m2 * DENSITY_AREA_M2
