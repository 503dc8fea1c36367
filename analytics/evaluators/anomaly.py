"""``anomaly``: a reading far from its sensor's usual value at this time of day."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import polars as pl
from psycopg import sql

from analytics.findings import Evaluation, evaluator, select, sensor_findings, slot
from analytics.rule_types import AnomalyRule
from citypulse.catalogue import KINDS


def _baseline(ctx, rule: AnomalyRule, now_ms: int) -> pl.DataFrame:
    """Per sensor: median and MAD of the metric at this time of day over the last days."""
    cache = ctx.cache.setdefault("anomaly_baselines", {})
    cached = cache.get(rule.id)
    if cached and now_ms - cached[0] < rule.refresh_s * 1000:
        return cached[1]
    i = KINDS[rule.kind].slot_of[rule.metric]
    now = datetime.fromtimestamp(now_ms / 1000, UTC)
    w = timedelta(minutes=rule.window_min)
    ranges = sql.SQL(" OR ").join(
        sql.SQL("(r.bucket >= {} AND r.bucket < {})").format(
            sql.Literal(now - timedelta(days=d) - w), sql.Literal(now - timedelta(days=d) + w))
        for d in range(1, rule.days + 1))
    q = sql.SQL(
        "COPY (SELECT r.sensor, r.{s} / r.{c} FROM citypulse.rollup_1m r "
        "JOIN citypulse.sensors s ON s.id = r.sensor AND s.kind = {kind} "
        "WHERE r.{c} > 0 AND ({ranges})) TO STDOUT (FORMAT CSV)").format(
        s=sql.Identifier(f"s{i}"), c=sql.Identifier(f"c{i}"), kind=sql.Literal(rule.kind),
        ranges=ranges)
    buf = io.BytesIO()
    with ctx.conn.cursor() as cur, cur.copy(q) as copy:
        for data in copy:
            buf.write(data)
    schema = {"sensor": pl.Int32, "x": pl.Float64}
    if buf.getbuffer().nbytes:
        buf.seek(0)
        h = pl.read_csv(buf, has_header=False, new_columns=list(schema), schema=schema)
    else:
        h = pl.DataFrame(schema=schema)
    base = h.group_by("sensor").agg(pl.col("x").median().alias("med"), pl.len().alias("n"),
                                    pl.col("x").alias("xs"))
    base = base.with_columns(
        (pl.col("xs").list.eval((pl.element() - pl.element().median()).abs().median())
         .list.first()).alias("mad")).drop("xs").filter(pl.col("n") >= rule.min_samples)
    cache[rule.id] = (now_ms, base)
    return base

@evaluator("anomaly")
def anomaly(rule: AnomalyRule, cur: pl.DataFrame, now_ms: int, open_keys: set, ctx
            ) -> Evaluation:
    """A robust z-score (median, MAD) of the latest value against the baseline."""
    base = _baseline(ctx, rule, now_ms)
    if base.is_empty():
        return Evaluation()
    col = slot(rule.kind, rule.metric)
    df = select(cur.filter(pl.col("kind") == rule.kind), rule.select).join(
        base, left_on="id", right_on="sensor", how="inner")
    rng = KINDS[rule.kind].metric(rule.metric)
    floor = (rng.max - rng.min) * 0.002 if rng else 1e-6
    df = df.with_columns(
        (0.6745 * (pl.col(col) - pl.col("med"))
         / pl.max_horizontal(pl.col("mad"), pl.lit(floor))).alias("z"))
    return sensor_findings(
        df, pl.col("z").abs() >= rule.z_above, pl.col("z").abs() < rule.clear_z,
        lambda r: {"metric": rule.metric, "value": r[col], "z": round(r["z"], 2),
                   "median": r["med"], "mad": r["mad"], "samples": r["n"]}, open_keys)
