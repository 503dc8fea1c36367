"""``offline``: sensors that stopped reporting, and gateways gone dark, grouped per gateway."""

from __future__ import annotations

import polars as pl

from analytics.findings import Evaluation, Finding, evaluator, select
from analytics.rule_types import OfflineRule
from citypulse.wire.topics import GATEWAY_HEARTBEAT_S


@evaluator("offline")
def offline(rule: OfflineRule, cur: pl.DataFrame, now_ms: int, open_keys: set, ctx
            ) -> Evaluation:
    """Sensors silent for ``factor`` intervals; gateways dark (heartbeat) or mostly silent."""
    df = cur if rule.kinds is None else cur.filter(pl.col("kind").is_in(rule.kinds))
    df = select(df, rule.select)
    assert ctx.started_ms is not None
    df = df.with_columns(pl.col("t").fill_null(ctx.started_ms).alias("seen")).with_columns(
        (pl.lit(now_ms) - pl.col("seen")).alias("age"))
    df = df.with_columns(
        (pl.col("age") > pl.col("interval_s") * 1000 * rule.factor).alias("offline"),
        (pl.col("age") > pl.col("interval_s") * 1500).alias("silent"))
    gw = df.filter(pl.col("gateway_id") != "").group_by("gateway_id").agg(
        pl.len().alias("n"), pl.col("silent").sum().alias("silent_n"),
        pl.col("offline").sum().alias("offline_n"),
        pl.col("sensor_id").filter(pl.col("silent")).alias("members"),
        pl.col("seen").filter(pl.col("silent")).max().alias("last_seen"),
        pl.col("lon").mean(), pl.col("lat").mean(),
        pl.col("zone_id").mode().first().alias("zone_id"))
    gw = gw.with_columns((pl.col("silent_n") / pl.col("n")).alias("frac"))
    gw, ref = _heartbeats(ctx, gw, rule, now_ms)
    ev = Evaluation()
    down = gw.filter(pl.col("dark") | ((pl.col("n") >= rule.min_gateway_sensors)
                                       & (pl.col("frac") >= rule.gateway_fraction)
                                       & (pl.col("offline_n") > 0)))
    dark = set(down.filter(pl.col("dark"))["gateway_id"])
    everyone = (df.filter(pl.col("gateway_id").is_in(list(dark))).group_by("gateway_id")
                .agg(pl.col("sensor_id").sort()) if dark else None)
    all_members = dict(everyone.iter_rows()) if everyone is not None else {}
    for r in down.iter_rows(named=True):
        g = r["gateway_id"]
        if r["dark"]:  # its heartbeat stopped: every sensor behind it is cut off
            ev.on[("gateway", g)] = Finding(
                "gateway", g, int(r["hb_ms"]), r["zone_id"], r["lon"], r["lat"],
                {"sensors": r["n"], "silent": r["silent_n"], "last_heartbeat_ms": r["hb_ms"],
                 "silent_s": round((ref - r["hb_ms"]) / 1000, 1),
                 "heartbeat_s": GATEWAY_HEARTBEAT_S}, tuple(all_members.get(g, ())))
            continue
        ev.on[("gateway", g)] = Finding(
            "gateway", g, int(r["last_seen"]), r["zone_id"], r["lon"],
            r["lat"], {"sensors": r["n"], "silent": r["silent_n"],
                       "last_seen_ms": r["last_seen"]}, tuple(sorted(r["members"])))
    suspect = set(gw.filter((pl.col("frac") >= 0.5) | pl.col("dark"))["gateway_id"])
    alone = ~pl.col("gateway_id").is_in(list(suspect))
    single = df.filter(pl.col("offline") & alone)
    if rule.group_by:  # one alert per zone (or ...) with its offline sensors as scope
        key, ekind = rule.group_by, rule.group_by.removesuffix("_id")
        for (gid,), g in single.filter(pl.col(key) != "").group_by(key, maintain_order=True):
            ev.on[(ekind, gid)] = Finding(
                ekind, gid, int(g["seen"].min()), g["zone_id"][0], g["lon"].mean(),
                g["lat"].mean(), {"offline": g.height, "last_seen_ms": int(g["seen"].max())},
                tuple(sorted(g["sensor_id"])))
        single = single.filter(pl.col(key) == "")
        open_g = [e for k, e in open_keys if k == ekind]
        if open_g:  # cleared once none of the group's sensors is even silent any more
            still = set(df.filter(pl.col("silent") & alone)[key])
            ev.clear |= {(ekind, g) for g in open_g if g not in still}
    for r in single.iter_rows(named=True):
        ev.on[("sensor", r["sensor_id"])] = Finding(
            "sensor", r["sensor_id"], int(r["seen"]), r["zone_id"], r["lon"], r["lat"],
            {"last_seen_ms": r["seen"], "interval_s": r["interval_s"],
             "gateway": r["gateway_id"] or None})
    open_gw = [e for k, e in open_keys if k == "gateway"]
    if open_gw:  # back: its heartbeat resumed, or (no heartbeats) most sensors report
        back = gw.filter(pl.col("gateway_id").is_in(open_gw) & (
            (pl.col("hb_ms").is_not_null() & ~pl.col("dark"))
            | (pl.col("frac") < 1 - rule.gateway_fraction)))
        ev.clear |= {("gateway", g) for g in back["gateway_id"]}
    open_s = [e for k, e in open_keys if k == "sensor"]
    if open_s:
        back = df.filter(pl.col("sensor_id").is_in(open_s) & ~pl.col("silent"))
        ev.clear |= {("sensor", s) for s in back["sensor_id"]}
    return ev

def _heartbeats(ctx, gw: pl.DataFrame, rule: OfflineRule, now_ms: int
                ) -> tuple[pl.DataFrame, int]:
    """Join each gateway's last heartbeat (``hb_ms``) and whether it is ``dark``.

    Dark: no message for ``factor`` x ``GATEWAY_HEARTBEAT_S``, measured against the
    freshest data the store holds (not the clock), so a stalled collector makes no
    gateway look dark.  Returns the frame and that reference time (epoch ms).
    """
    rows = ctx.conn.execute(
        "SELECT gateway_id, (extract(epoch FROM last_seen) * 1000)::int8 "
        "FROM citypulse.gateway_seen").fetchall()
    hb = pl.DataFrame(rows, schema={"gateway_id": pl.Utf8, "hb_ms": pl.Int64},
                      orient="row")
    fresh = [x for x in (hb["hb_ms"].max(), ctx.window.latest["t"].max()) if x is not None]
    ref = min(now_ms, max(fresh)) if fresh else now_ms
    limit = rule.factor * GATEWAY_HEARTBEAT_S * 1000
    gw = gw.join(hb, on="gateway_id", how="left").with_columns(
        (pl.lit(ref) - pl.col("hb_ms") >= limit).fill_null(False).alias("dark"))
    return gw, ref
