"""``congestion``: road segments whose congestion index is high, one alert per queue head."""

from __future__ import annotations

import polars as pl

from analytics.findings import Evaluation, Finding, evaluator, select, slot
from analytics.rule_types import CongestionRule
from citypulse.formulas import congestion_index_expr


@evaluator("congestion")
def congestion(rule: CongestionRule, cur: pl.DataFrame, now_ms: int, open_keys: set, ctx
               ) -> Evaluation:
    """Per segment: mean speed and occupancy of its fresh loops vs its free-flow speed.

    A congested segment whose downstream neighbour is congested too is part of that queue;
    the queue's head carries the alert, with the queue's segments as scope.
    """
    speed, occ, cnt = (slot("traffic", m) for m in
                       ("speed_kmh", "occupancy_pct", "vehicle_count"))
    df = select(cur.filter((pl.col("kind") == "traffic") & pl.col("fresh")
                           & (pl.col("segment_id") != "")), rule.select)
    if df.is_empty():
        return Evaluation()
    city = ctx.city
    seg = df.group_by("segment_id").agg(
        pl.col(speed).mean().alias("speed"), pl.col(occ).mean().alias("occ"),
        pl.col(cnt).sum().alias("count"), pl.col("free_flow_kmh").max().alias("ff"),
        pl.col("t").max().alias("t"), pl.col("zone_id").first().alias("zone_id"),
        pl.col("lon").mean().alias("lon"), pl.col("lat").mean().alias("lat"),
        pl.col("sensor_id").alias("sensors"))
    segs = city.segments
    ff_model = pl.DataFrame({"segment_id": list(segs),
                             "ff_model": [s["free_flow_kmh"] for s in segs.values()]},
                            schema={"segment_id": pl.Utf8, "ff_model": pl.Float64})
    seg = seg.join(ff_model, on="segment_id", how="left").with_columns(
        pl.coalesce("ff", "ff_model", pl.lit(rule.default_free_flow_kmh)).alias("ff"))
    seg = seg.with_columns(congestion_index_expr(pl.col("speed"), pl.col("ff")).alias("index"))
    on = seg.filter((pl.col("index") >= rule.index_above)
                    & (pl.col("occ").fill_null(100) >= rule.min_occupancy_pct))
    congested = set(on["segment_id"])
    info = {r["segment_id"]: r for r in seg.iter_rows(named=True)}
    ev = Evaluation()
    for sid in sorted(congested):
        if any(x in congested for x in city.succ.get(sid, ())):
            continue  # not the head of its queue
        queue, todo, seen = [sid], [sid], {sid}
        while todo:
            for p in city.pred.get(todo.pop(), ()):
                if p in congested and p not in seen:
                    seen.add(p)
                    queue.append(p)
                    todo.append(p)
        r = info[sid]
        model = segs.get(sid, {})
        length = sum(segs.get(q, {}).get("length_m", 0.0) for q in queue)
        ev.on[("segment", sid)] = Finding(
            "segment", sid, int(r["t"]), model.get("zone_id", r["zone_id"]),
            model.get("lon", r["lon"]), model.get("lat", r["lat"]),
            {"congestion_index": round(r["index"], 3), "speed_kmh": r["speed"],
             "free_flow_kmh": r["ff"], "occupancy_pct": r["occ"],
             "queue_segments": len(queue), "queue_length_m": round(length, 1),
             "road": model.get("road"), "sensors": r["sensors"][:20]},
            tuple(queue), model.get("geometry"))
    open_ids = [e for k, e in open_keys if k == "segment"]
    ev.clear = {("segment", s) for s in seg.filter(
        (pl.col("index") < rule.clear_below) & pl.col("segment_id").is_in(open_ids)
    )["segment_id"]}
    return ev
