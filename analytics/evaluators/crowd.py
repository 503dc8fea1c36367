"""``crowd``: people density in a zone above its limit (persons per 1,000 m2).

The limit is the zone's in the city model (from the catalogue of zone types,
``citypulse.city.model.ZONE_TYPES``), unless the rule names the zone in ``limits``.
"""

from __future__ import annotations

import polars as pl

from analytics.findings import Evaluation, evaluator, select, slot, zone_finding
from analytics.rule_types import CrowdRule
from citypulse.formulas import DENSITY_AREA_M2, density_expr


def _zone_areas(city) -> pl.DataFrame:
    zones = city.zones
    return pl.DataFrame(
        {"zone_id": list(zones), "zarea": [z["area_m2"] for z in zones.values()],
         "ztype": [z["zone_type"] for z in zones.values()],
         "zlimit": [z.get("density_limit") for z in zones.values()]},
        schema={"zone_id": pl.Utf8, "zarea": pl.Float64, "ztype": pl.Utf8,
                "zlimit": pl.Float64})


@evaluator("crowd")
def crowd(rule: CrowdRule, cur: pl.DataFrame, now_ms: int, open_keys: set, ctx) -> Evaluation:
    """Density per zone, by the zone's area (``density: zone``) or the counters' coverage."""
    cnt = slot("people", "people_count")
    df = select(cur.filter((pl.col("kind") == "people") & pl.col("fresh")), rule.select)
    if df.is_empty():
        return Evaluation()
    df = df.filter(pl.col(cnt).is_not_null()).with_columns(
        pl.col("area_m2").fill_null(rule.coverage_m2).alias("cover"))
    z = df.group_by("zone_id").agg(
        pl.col(cnt).sum().alias("people"), pl.len().alias("n"),
        (pl.col(cnt) / pl.col("cover")).mean().alias("per_counter"),
        pl.col("cover").sum().alias("covered"),
        pl.col("t").max().alias("t"), pl.col("zone_type").first().alias("ptype"))
    z = z.join(_zone_areas(ctx.city), on="zone_id", how="left").with_columns(
        pl.coalesce("ztype", "ptype").alias("ztype"))
    if rule.density == "zone":
        z = z.with_columns(pl.col("zarea").alias("area")).filter(pl.col("area") > 0)
        z = z.with_columns(density_expr(pl.col("people"), pl.col("area")).alias("density"))
    else:
        z = z.with_columns(pl.col("covered").alias("area"),
                           (pl.col("per_counter") * DENSITY_AREA_M2).alias("density"))
    ev = Evaluation()
    open_ids = {e for k, e in open_keys if k == "zone"}
    for r in z.iter_rows(named=True):
        limit = rule.limit_for(r["zone_id"], r["ztype"], r["zlimit"])
        if r["density"] >= limit:
            ev.on[("zone", r["zone_id"])] = zone_finding(
                ctx.city, r["zone_id"], int(r["t"]),
                {"density_per_1000m2": round(r["density"], 1), "limit": limit,
                 "people": r["people"], "area_m2": round(r["area"], 1),
                 "sensors": r["n"], "method": rule.density})
        elif r["zone_id"] in open_ids and r["density"] < limit * rule.clear_ratio:
            ev.clear.add(("zone", r["zone_id"]))
    return ev
