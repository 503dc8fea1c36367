"""``rate_of_change``: a metric's rise or fall per minute, or a sudden change as a share."""

from __future__ import annotations

import polars as pl

from analytics.findings import RAW_SCHEMA, Evaluation, evaluator, select, sensor_findings, slot
from analytics.rule_types import RateRule


@evaluator("rate_of_change")
def rate(rule: RateRule, cur: pl.DataFrame, now_ms: int, open_keys: set, ctx) -> Evaluation:
    """Rate over ``over_s`` from the kind's reading history (first vs last in the window)."""
    col = slot(rule.kind, rule.metric)
    h = ctx.window.history.get(rule.kind, pl.DataFrame(schema=RAW_SCHEMA)).filter(
        (pl.col("t") >= now_ms - int(rule.over_s * 1000)) & pl.col(col).is_not_null())
    if h.is_empty():
        return Evaluation()
    g = h.sort("t").group_by("sensor").agg(
        pl.col("t").first().alias("t0"), pl.col("t").last().alias("t1"),
        pl.col(col).first().alias("x0"), pl.col(col).last().alias("x1"),
        pl.col(col).max().alias("hi"), pl.col(col).min().alias("lo"))
    share = rule.drop_share if rule.drop_share is not None else rule.rise_share
    if share is not None:  # sudden change: latest vs the window's extreme, as a share
        return _share(rule, col, share, g, cur, open_keys)
    g = g.filter(pl.col("t1") - pl.col("t0") >= rule.over_s * 500).with_columns(
        ((pl.col("x1") - pl.col("x0")) / (pl.col("t1") - pl.col("t0")) * 60000)
        .alias("rate"))
    df = select(cur.filter(pl.col("kind") == rule.kind), rule.select).drop(
        [c for c in ("rate",) if c in cur.columns]).join(
        g.select("sensor", "rate"), left_on="id", right_on="sensor", how="inner")
    lim = rule.rise_per_min if rule.rise_per_min is not None else rule.fall_per_min
    r_ = pl.col("rate") if rule.rise_per_min is not None else -pl.col("rate")
    return sensor_findings(
        df, r_ >= lim, r_ < lim * rule.clear_ratio,
        lambda r: {"metric": rule.metric, "rate_per_min": r["rate"], "limit": lim,
                   "value": r[col], "over_s": rule.over_s}, open_keys, rule.group_by)


def _share(rule: RateRule, col: str, share: float, g: pl.DataFrame, cur: pl.DataFrame,
           open_keys: set) -> Evaluation:
    drop = rule.drop_share is not None
    change = ((pl.col("hi") - pl.col("x1")) / pl.col("hi") if drop
              else (pl.col("x1") - pl.col("lo")) / pl.col("lo"))
    g = g.filter(pl.col("t1") > pl.col("t0")).with_columns(
        pl.when(pl.col("hi" if drop else "lo") > 0).then(change).otherwise(0.0)
        .alias("change"))
    df = select(cur.filter(pl.col("kind") == rule.kind), rule.select).join(
        g.select("sensor", "change"), left_on="id", right_on="sensor", how="inner")
    on = (pl.col("change") >= share) & (pl.col(col) >= rule.min_value)
    return sensor_findings(
        df, on, pl.col("change") < share * rule.clear_ratio,
        lambda r: {"metric": rule.metric, "change_share": round(r["change"], 3),
                   "limit_share": share, "value": r[col], "over_s": rule.over_s},
        open_keys, rule.group_by)
