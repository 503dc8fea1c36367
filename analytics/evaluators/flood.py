"""``flood``: heavy rain and high water together in a zone."""

from __future__ import annotations

import polars as pl

from analytics.findings import Evaluation, evaluator, select, slot, zone_finding
from analytics.rule_types import FloodRule


@evaluator("flood")
def flood(rule: FloodRule, cur: pl.DataFrame, now_ms: int, open_keys: set, ctx) -> Evaluation:
    """ON where a zone's rain and level both reach their limits; CLEAR when either drops."""
    rain, level = slot("water", "rain_mm_h"), slot("water", "level_m")
    w = select(cur.filter((pl.col("kind") == "water") & pl.col("fresh")), rule.select)
    if w.is_empty():
        return Evaluation()
    lv = select(w, rule.level_select)
    zr = w.group_by("zone_id").agg(pl.col(rain).max().alias("rain"),
                                   pl.col("t").max().alias("t"))
    zl = lv.group_by("zone_id").agg(
        pl.col(level).max().alias("level"),
        pl.col("sensor_id").filter(pl.col(level) >= rule.level_m).alias("high"))
    z = zr.join(zl, on="zone_id", how="full", coalesce=True)
    ev = Evaluation()
    open_ids = {e for k, e in open_keys if k == "zone"}
    crain = rule.clear_rain_mm_h if rule.clear_rain_mm_h is not None else rule.rain_mm_h
    clevel = rule.clear_level_m if rule.clear_level_m is not None else rule.level_m
    for r in z.iter_rows(named=True):
        rn, lvl = r["rain"], r["level"]
        if rn is not None and lvl is not None and rn >= rule.rain_mm_h \
                and lvl >= rule.level_m:
            ev.on[("zone", r["zone_id"])] = zone_finding(
                ctx.city, r["zone_id"], int(r["t"] or 0),
                {"rain_mm_h": rn, "level_m": lvl, "rain_limit": rule.rain_mm_h,
                 "level_limit": rule.level_m}, tuple(r["high"] or ()))
        elif r["zone_id"] in open_ids and ((rn is not None and rn < crain)
                                           or (lvl is not None and lvl < clevel)):
            ev.clear.add(("zone", r["zone_id"]))
    return ev
