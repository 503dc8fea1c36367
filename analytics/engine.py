"""The alert engine: evaluate the rules on the freshest readings every tick, drive the lifecycle.

In: a psycopg connection (autocommit), a :class:`~analytics.rules.RuleSet`, optionally a
:class:`~analytics.delivery.Delivery`.  Out: alerts opened, refreshed, escalated and
auto-resolved in the store (and delivered).  Call :meth:`Engine.tick` every 1-2 s (the
``citypulse alerts run`` worker does); ``now`` may be given (tests, replay).

Each tick reads the raw readings that arrived since the previous tick (``citypulse.raw`` by
time, with a lateness margin) into polars, keeps the latest reading per sensor, and
evaluates every rule to two sets per rule: entities where the condition is ON (with
evidence), and entities where the CLEAR condition holds.  Timers turn these into alerts: an
entity ON for ``for_s`` opens an alert (one per rule and entity); an open alert whose entity
is CLEAR for ``clear_for_s`` auto-resolves.  ON and CLEAR use separate levels (hysteresis),
so values oscillating around a threshold neither flap nor re-open.  Grouping: a finding's
``scope`` lists members; members' own open alerts are resolved into it ("regroup"); more
than ``collapse_above`` entities at once become one city-wide alert.  Supersession (a rule's
``supersedes``): one open alert per incident -- a higher alert covering a lower rule's alert
for the same place resolves it ("supersede") and keeps its history, and the lower rule does
not open for covered places while the higher alert is open.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import psycopg
from psycopg import sql

from analytics import lifecycle
from analytics.rules import (
    AnomalyRule,
    ConditionRule,
    CongestionRule,
    CrowdRule,
    FloodRule,
    OfflineRule,
    RateRule,
    RuleSet,
    ThresholdRule,
    op_func,
)
from citypulse.catalogue import KINDS, MAX_SLOTS
from citypulse.formulas import congestion_index, density_per_1000m2
from citypulse.wire.topics import GATEWAY_HEARTBEAT_S

log = logging.getLogger(__name__)

SLOTS = [f"v{i}" for i in range(MAX_SLOTS)]
CITY = "city"
_RAW_SCHEMA = {"sensor": pl.Int32, "t": pl.Int64, **{s: pl.Float64 for s in SLOTS}}


@dataclass(frozen=True, slots=True)
class Finding:
    """One entity where a rule's condition holds now, with where and why."""

    entity_kind: str
    entity_id: str
    since_ms: int
    zone_id: str = CITY
    lon: float | None = None
    lat: float | None = None
    evidence: dict = field(default_factory=dict)
    scope: tuple = ()
    geometry: dict | None = None


@dataclass
class Evaluation:
    """A rule's verdict this tick: entities ON (by key) and open entities now CLEAR."""

    on: dict[tuple[str, str], Finding] = field(default_factory=dict)
    clear: set[tuple[str, str]] = field(default_factory=set)


def _slot(kind: str, metric: str) -> str:
    return f"v{KINDS[kind].slot_of[metric]}"


def _zone_topic_id(z: Any) -> str:
    s = str(z) if z else CITY
    return "".join("_" if c in "+#/\x00" else c for c in s)[:128] or CITY


class CityModel:
    """What the engine needs of the twin: segment topology and geometry, zone areas."""

    def __init__(self, city: Any = None) -> None:
        self.segments: dict[str, dict] = {}
        self.succ: dict[str, list[str]] = {}
        self.pred: dict[str, list[str]] = {}
        self.zones: dict[str, dict] = {}
        self.zone_lookup: Callable[[Any, Any], Any] | None = None
        self.model: Any = None
        self.key = ""
        if city is None:
            from citypulse.city import build_city

            city = build_city()
        import shapely

        from citypulse.city.store import model_key

        self.model, self.key = city, model_key(city)
        from shapely.geometry import mapping

        seg = city.segments
        mids = shapely.line_interpolate_point(seg.geometry.values, 0.5, normalized=True)
        seg_zone = city.zones_of(shapely.get_x(mids), shapely.get_y(mids))
        by_from: dict[str, list[str]] = {}
        by_to: dict[str, list[str]] = {}
        for row, mid, z in zip(seg.itertuples(index=False), mids, seg_zone, strict=True):
            self.segments[row.segment_id] = {
                "from": row.from_node, "to": row.to_node, "road": row.road,
                "free_flow_kmh": float(row.free_flow_kmh), "length_m": float(row.length_m),
                "geometry": mapping(row.geometry), "lon": mid.x, "lat": mid.y,
                "zone_id": z or CITY,
            }
            by_from.setdefault(row.from_node, []).append(row.segment_id)
            by_to.setdefault(row.to_node, []).append(row.segment_id)
        for sid, s in self.segments.items():
            self.succ[sid] = [x for x in by_from.get(s["to"], [])
                              if self.segments[x]["to"] != s["from"]]
            self.pred[sid] = [x for x in by_to.get(s["from"], [])
                              if self.segments[x]["from"] != s["to"]]
        for row in city.zones.itertuples(index=False):
            c = row.geometry.centroid
            self.zones[row.zone_id] = {
                "zone_type": row.zone_type, "area_m2": float(row.area_m2), "name": row.name,
                "lon": c.x, "lat": c.y, "geometry": mapping(row.geometry.simplify(1e-4)),
            }
        self.zone_lookup = city.zones_of


class Engine:
    """Evaluates the rules every tick and keeps the alerts in the store in step."""

    def __init__(self, conn: psycopg.Connection, rules: RuleSet, delivery: Any = None,
                 city: CityModel | None = None, lateness_s: float = 3.0,
                 meta_refresh_s: float = 60.0) -> None:
        self.conn = conn
        self.rules = rules
        self.delivery = delivery
        self.city = city if city is not None else CityModel()
        self._follow = city is None  # an engine given a city keeps it (benchmarks, tests)
        self.lateness_ms = int(lateness_s * 1000)
        self.meta_refresh_s = meta_refresh_s
        self.meta: pl.DataFrame | None = None
        self._meta_at = 0.0
        self.latest = pl.DataFrame(schema=_RAW_SCHEMA)
        self.history: dict[str, pl.DataFrame] = {}  # kind -> recent readings, rate rules
        self.fetched_to_ms: int | None = None
        self.started_ms: int | None = None
        self.on_since: dict[tuple[str, str, str], int] = {}
        self.off_since: dict[tuple[str, str, str], int] = {}
        self._last_update: dict[int, int] = {}
        self._was_open: dict[str, set[tuple[str, str]]] = {}
        self._engine_resolved: set[int] = set()
        self._hold_until: dict[tuple[str, str, str], int] = {}
        self._baselines: dict[str, tuple[int, pl.DataFrame]] = {}
        self._last_escalation_check = 0
        self._supersedes = {r.id: set(r.supersedes) for r in rules.active() if r.supersedes}
        self._open: dict[tuple[str, str, str], dict] = {}
        self._places: dict[tuple, tuple] = {}  # collapsed alerts' places by member set
        self.stats = {"ticks": 0, "rows": 0, "opened": 0, "resolved": 0, "escalated": 0,
                      "tick_ms": 0.0}
        rate_rules = rules.of_type("rate_of_change")
        self.history_ms_of = {k: int(max(r.over_s for r in rate_rules if r.kind == k) * 1000)
                              + 30_000 for k in {r.kind for r in rate_rules}}
        self.history_ms = max(self.history_ms_of.values(), default=0)

    # --- inputs ---------------------------------------------------------------------------
    def _follow_city(self) -> None:
        """Switch to the active city model when it changed (``citypulse city use``)."""
        from citypulse.city.store import active_key, model_key

        if not self._follow:
            return
        name, version, _ = active_key(self.conn)
        if f"{name}@{version}" != self.city.key:
            from citypulse.city.store import active

            self.city = CityModel(active(self.conn))
            log.info("alerts engine on city %s", model_key(self.city.model))

    def load_meta(self) -> pl.DataFrame:
        """Sensors with their placement (zone, segment, role, coverage) and gateway, interval.

        Placement is the one source (``citypulse.sensor_placement``, written by ``registry
        load`` and the twin); sensors not placed on the engine's city yet are placed here
        with the same rule (:func:`citypulse.city.placement.place`).
        """
        cur = self.conn.cursor()
        buf = io.BytesIO()
        q = sql.SQL(
            "COPY (SELECT s.id, s.sensor_id, s.kind, s.lon, s.lat, coalesce(s.gateway_id, ''), "
            "coalesce(p.zone_id, ''), coalesce(p.role, ''), coalesce(p.segment_id, ''), "
            "p.coverage_m2, (s.props->>'interval_s')::float8, "
            "coalesce(s.props->>'building_id', ''), "
            "(p.sensor IS NOT NULL AND p.city_model = {key})::int, "
            "CASE WHEN p.city_model = {key} THEN NULL ELSE s.props::text END "
            "FROM citypulse.sensors s LEFT JOIN citypulse.sensor_placement p "
            "ON p.sensor = s.id) TO STDOUT (FORMAT CSV)").format(key=sql.Literal(self.city.key))
        with cur.copy(q) as copy:
            for data in copy:
                buf.write(data)
        cols = ["id", "sensor_id", "kind", "lon", "lat", "gateway_id", "zone_id", "role",
                "segment_id", "area_m2", "interval_s", "building_id", "placed", "props"]
        schema = {"id": pl.Int32, "sensor_id": pl.Utf8, "kind": pl.Utf8, "lon": pl.Float64,
                  "lat": pl.Float64, "gateway_id": pl.Utf8, "zone_id": pl.Utf8,
                  "role": pl.Utf8, "segment_id": pl.Utf8, "area_m2": pl.Float64,
                  "interval_s": pl.Float64, "building_id": pl.Utf8, "placed": pl.Int8,
                  "props": pl.Utf8}
        buf.seek(0)
        if buf.getbuffer().nbytes == 0:
            meta = pl.DataFrame(schema=schema)
        else:
            meta = pl.read_csv(buf, has_header=False, new_columns=cols, schema=schema)
        meta = meta.with_columns(*(pl.col(c).fill_null("") for c in (
            "gateway_id", "role", "segment_id", "zone_id", "building_id")))
        todo = meta.filter(pl.col("placed") == 0)
        if len(todo) and self.city.model is not None:
            meta = self._place_missing(meta, todo)
        default_iv = pl.DataFrame({"kind": list(KINDS),
                                   "kind_interval_s": [float(k.interval_s) for k in
                                                       KINDS.values()]})
        ztype = pl.DataFrame({"zone_id": list(self.city.zones),
                              "zone_type": [z["zone_type"] for z in self.city.zones.values()]},
                             schema={"zone_id": pl.Utf8, "zone_type": pl.Utf8})
        meta = meta.join(default_iv, on="kind", how="left").join(
            ztype, on="zone_id", how="left").with_columns(
            pl.coalesce("interval_s", "kind_interval_s", pl.lit(60.0)).alias("interval_s"),
            pl.col("zone_type").fill_null(""),
            pl.lit(None, dtype=pl.Float64).alias("free_flow_kmh"),  # the segment's, below
            pl.when(pl.col("zone_id") == "").then(pl.lit(CITY)).otherwise(pl.col("zone_id"))
            .alias("zone_id"),
        ).drop("kind_interval_s", "placed", "props")
        return meta

    def _place_missing(self, meta: pl.DataFrame, todo: pl.DataFrame) -> pl.DataFrame:
        from citypulse.city.placement import place

        props = [json.loads(x) if x else {} for x in todo["props"].to_list()]
        p = place(self.city.model, todo["kind"].to_numpy(), todo["lon"].to_numpy(),
                  todo["lat"].to_numpy(), props)
        fill = pl.DataFrame({
            "id": todo["id"], "z2": [z or "" for z in p["zone_id"]],
            "r2": [r or "" for r in p["role"]], "s2": [x or "" for x in p["segment_id"]],
            "a2": p["coverage_m2"]},
            schema={"id": pl.Int32, "z2": pl.Utf8, "r2": pl.Utf8, "s2": pl.Utf8,
                    "a2": pl.Float64})
        return meta.join(fill, on="id", how="left").with_columns(
            pl.coalesce("z2", "zone_id").alias("zone_id"),
            pl.coalesce("r2", "role").alias("role"),
            pl.coalesce("s2", "segment_id").alias("segment_id"),
            pl.coalesce(pl.col("a2").fill_nan(None), "area_m2").alias("area_m2"),
        ).drop("z2", "r2", "s2", "a2")

    def _fetch(self, lo_ms: int, hi_ms: int) -> pl.DataFrame:
        lo = datetime.fromtimestamp(lo_ms / 1000, UTC)
        hi = datetime.fromtimestamp(hi_ms / 1000, UTC)
        q = sql.SQL(
            "COPY (SELECT sensor, (extract(epoch FROM time) * 1000)::int8, {slots} "
            "FROM citypulse.raw WHERE time > {lo} AND time <= {hi}) TO STDOUT (FORMAT CSV)"
        ).format(slots=sql.SQL(", ").join(map(sql.Identifier, SLOTS)),
                 lo=sql.Literal(lo), hi=sql.Literal(hi))
        return self._copy_rows(q)

    def _copy_rows(self, q: sql.Composable) -> pl.DataFrame:
        """Run a ``COPY (SELECT sensor, t_ms, v0..v7 ...) TO STDOUT`` into a raw-schema frame."""
        buf = io.BytesIO()
        with self.conn.cursor() as cur, cur.copy(q) as copy:
            for data in copy:
                buf.write(data)
        if buf.getbuffer().nbytes == 0:
            return pl.DataFrame(schema=_RAW_SCHEMA)
        buf.seek(0)
        return pl.read_csv(buf, has_header=False, new_columns=list(_RAW_SCHEMA),
                           schema=_RAW_SCHEMA)

    def ingest(self, now_ms: int) -> int:
        """Read readings that arrived since the last tick; update latest and history."""
        if self.fetched_to_ms is None:
            warm = max((k.interval_s for k in KINDS.values()), default=60) * 3 * 1000
            lo = now_ms - int(max(warm, self.history_ms))
        else:
            lo = self.fetched_to_ms - self.lateness_ms
        new = self._fetch(lo, now_ms)
        self.fetched_to_ms = now_ms
        self._take_latest(new)
        # history per kind, each as long as its longest rate rule needs; the fetch holds every
        # reading in (lo, now], so it replaces that slice (late rows included, none twice)
        for kind, span in self.history_ms_of.items():
            old = self.history.get(kind)
            keep = (old.filter((pl.col("t") <= lo) & (pl.col("t") > now_ms - span))
                    if old is not None else None)
            h = new
            if self.meta is not None and len(new):
                ids = self.meta.filter(pl.col("kind") == kind)["id"]
                h = new.filter(pl.col("sensor").is_in(ids.implode())
                               & (pl.col("t") > now_ms - span))
            self.history[kind] = pl.concat([keep, h]) if keep is not None else h
        return len(new)

    # --- the tick ---------------------------------------------------------------------------
    def tick(self, now: datetime | None = None) -> dict:
        """One evaluation round; returns what happened (counts)."""
        t0 = time.perf_counter()
        now = now or datetime.now(UTC)
        now_ms = int(now.timestamp() * 1000)
        if self.started_ms is None:
            self.started_ms = now_ms
        if self.meta is None or time.monotonic() - self._meta_at > self.meta_refresh_s:
            self._follow_city()
            self.meta = self.load_meta()
            self._meta_at = time.monotonic()
        rows = self.ingest(now_ms)
        rows += self._catch_up_silent(now_ms)
        cur = self._current(now_ms)
        open_alerts = self._open = self._open_alerts()
        done = {"rows": rows, "opened": 0, "resolved": 0, "escalated": 0}
        for rule in self.rules.active():
            open_keys = {(k, e): a for (r, k, e), a in open_alerts.items() if r == rule.id}
            try:
                ev = self.evaluate(rule, cur, now_ms, set(open_keys))
            except Exception:  # a broken rule must not stop the others
                log.exception("rule %s failed", rule.id)
                continue
            ev = self._collapse(rule, ev, open_keys, now_ms)
            o, r = self._apply(rule, ev, open_keys, now, now_ms)
            done["opened"] += o
            done["resolved"] += r
        done["resolved"] += self._supersede(now)
        if now_ms - self._last_escalation_check >= 5000:
            self._last_escalation_check = now_ms
            done["escalated"] = self.escalate_due(now)
        self.stats["ticks"] += 1
        for k in ("rows", "opened", "resolved", "escalated"):
            self.stats[k] += done[k]
        self.stats["tick_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        return done

    def _catch_up_silent(self, now_ms: int) -> int:
        """Readings the time-window fetch missed, for sensors that look silent.

        ``ingest`` reads rows by their reading time, ``lateness_s`` back; a row committed
        later than that (a collector stalled for a few seconds, a spool backfill) is never
        seen, and its sensor would look offline, then back: a flapping alert.  So sensors
        silent for more than one and a half intervals are looked up in the store directly (by
        the (sensor, time) index; only the silent few, not the fleet) and their latest
        readings taken in.
        """
        assert self.meta is not None
        seen = self.meta.select("id", "interval_s").join(
            self.latest.select("sensor", "t"), left_on="id", right_on="sensor", how="left")
        silent = seen.filter(pl.col("t").is_null()
                             | (pl.lit(now_ms) - pl.col("t") > pl.col("interval_s") * 1500))
        if silent.is_empty() or silent.height > 50_000:
            return 0
        since = datetime.fromtimestamp((now_ms - max(self.history_ms, 600_000)) / 1000, UTC)
        until = datetime.fromtimestamp(now_ms / 1000, UTC)
        q = sql.SQL(
            "COPY (SELECT DISTINCT ON (sensor) sensor, (extract(epoch FROM time) * 1000)::int8, "
            "{slots} FROM citypulse.raw WHERE sensor = ANY({ids}) AND time > {lo} "
            "AND time <= {hi} ORDER BY sensor, time DESC) TO STDOUT (FORMAT CSV)"
        ).format(slots=sql.SQL(", ").join(map(sql.Identifier, SLOTS)),
                 ids=sql.Literal(silent["id"].to_list()), lo=sql.Literal(since),
                 hi=sql.Literal(until))
        found = self._copy_rows(q)
        late = found.join(self.latest.select("sensor", pl.col("t").alias("had")), on="sensor",
                          how="left").filter(pl.col("had").is_null()
                                             | (pl.col("t") > pl.col("had"))).drop("had")
        if late.is_empty():
            return 0
        self._take_latest(late)
        self.stats["late_rows"] = self.stats.get("late_rows", 0) + late.height
        return late.height

    def _take_latest(self, rows: pl.DataFrame) -> None:
        """Fold readings into the latest reading per sensor."""
        if len(rows):
            self.latest = (pl.concat([self.latest, rows]).sort("t")
                           .unique(subset="sensor", keep="last"))

    def _current(self, now_ms: int) -> pl.DataFrame:
        """Latest reading per sensor joined with the registry, with freshness."""
        assert self.meta is not None
        cur = self.meta.join(self.latest, left_on="id", right_on="sensor", how="left")
        return cur.with_columns(
            ((pl.lit(now_ms) - pl.col("t")) <= pl.col("interval_s") * 3000).fill_null(False)
            .alias("fresh"))

    def _open_alerts(self) -> dict[tuple[str, str, str], dict]:
        rows = self.conn.execute(
            "SELECT id, rule, entity_kind, entity_id, status, scope, started_at "
            "FROM citypulse.alerts WHERE status <> 'resolved'").fetchall()
        return {(r[1], r[2], r[3]): {"id": r[0], "status": r[4], "scope": r[5],
                                     "started_at": r[6]} for r in rows}

    # --- rules --------------------------------------------------------------------------------
    def evaluate(self, rule: Any, cur: pl.DataFrame, now_ms: int,
                 open_keys: set[tuple[str, str]]) -> Evaluation:
        """Evaluate one rule on the current state."""
        if isinstance(rule, ThresholdRule):
            return self._threshold(rule, cur, open_keys)
        if isinstance(rule, ConditionRule):
            return self._condition(rule, cur, open_keys)
        if isinstance(rule, RateRule):
            return self._rate(rule, cur, now_ms, open_keys)
        if isinstance(rule, CongestionRule):
            return self._congestion(rule, cur, open_keys)
        if isinstance(rule, CrowdRule):
            return self._crowd(rule, cur, open_keys)
        if isinstance(rule, FloodRule):
            return self._flood(rule, cur, open_keys)
        if isinstance(rule, OfflineRule):
            return self._offline(rule, cur, now_ms, open_keys)
        if isinstance(rule, AnomalyRule):
            return self._anomaly(rule, cur, now_ms, open_keys)
        return Evaluation()

    @staticmethod
    def _select(df: pl.DataFrame, select: dict[str, str]) -> pl.DataFrame:
        for k, v in select.items():
            if k in df.columns:
                df = df.filter(pl.col(k) == v)
        return df

    def _sensor_findings(self, df: pl.DataFrame, on: pl.Expr, clear: pl.Expr,
                         evidence: Callable[[dict], dict], open_keys: set,
                         group_by: str | None = None) -> Evaluation:
        df = df.with_columns(on.fill_null(False).alias("_on"), clear.fill_null(False)
                             .alias("_clear"))
        ev = Evaluation()
        if group_by:  # sensors without the group property stay on their own
            ev = self._grouped_findings(df, group_by, evidence, open_keys)
            df = df.filter(pl.col(group_by) == "")
        for r in df.filter(pl.col("_on") & pl.col("fresh")).iter_rows(named=True):
            ev.on[("sensor", r["sensor_id"])] = Finding(
                "sensor", r["sensor_id"], int(r["t"]), r["zone_id"], r["lon"], r["lat"],
                evidence(r))
        open_ids = [e for k, e in open_keys if k == "sensor"]
        if open_ids:
            ev.clear |= {("sensor", s) for s in df.filter(
                pl.col("_clear") & pl.col("fresh") & pl.col("sensor_id").is_in(open_ids)
            )["sensor_id"]}
        return ev

    def _grouped_findings(self, df: pl.DataFrame, group_by: str,
                          evidence: Callable[[dict], dict], open_keys: set) -> Evaluation:
        ekind = group_by.removesuffix("_id")
        df = df.filter(pl.col(group_by) != "")
        ev = Evaluation()
        hot = df.filter(pl.col("_on") & pl.col("fresh")).sort("t")
        for (gid,), g in hot.group_by(group_by, maintain_order=True):
            first = g.row(0, named=True)
            ev.on[(ekind, gid)] = Finding(
                ekind, gid, int(first["t"]), first["zone_id"], float(g["lon"].mean()),
                float(g["lat"].mean()), {**evidence(g.row(len(g) - 1, named=True)),
                                         "sensors_on": len(g)},
                tuple(sorted(g["sensor_id"])))
        open_ids = [e for k, e in open_keys if k == ekind]
        if open_ids:
            g = df.filter(pl.col(group_by).is_in(open_ids) & pl.col("fresh")).group_by(
                group_by).agg(pl.col("_clear").all().alias("c"))
            ev.clear = {(ekind, x) for x in g.filter(pl.col("c"))[group_by]}
        return ev

    def _threshold(self, rule: ThresholdRule, cur: pl.DataFrame, open_keys: set) -> Evaluation:
        df = self._select(cur.filter(pl.col("kind") == rule.kind), rule.select)
        v = pl.col(_slot(rule.kind, rule.metric))
        if rule.above is not None:
            on, lvl = v > rule.above, rule.above
            clear = v <= (rule.clear if rule.clear is not None else rule.above)
        else:
            on, lvl = v < rule.below, rule.below
            clear = v >= (rule.clear if rule.clear is not None else rule.below)
        slot = _slot(rule.kind, rule.metric)
        return self._sensor_findings(
            df, on, clear, lambda r: {"metric": rule.metric, "value": r[slot],
                                      "threshold": lvl, "at_ms": r["t"]}, open_keys,
            rule.group_by)

    def _condition(self, rule: ConditionRule, cur: pl.DataFrame, open_keys: set) -> Evaluation:
        df = self._select(cur.filter(pl.col("kind") == rule.kind), rule.select)

        def clauses(parsed: list) -> pl.Expr:
            exprs = []
            for clause in parsed:
                e = pl.lit(True)
                for metric, op, val in clause:
                    c = pl.col(_slot(rule.kind, metric))
                    e = e & _expr_op(c, op, val).fill_null(False)
                exprs.append(e)
            return pl.any_horizontal(exprs)

        on = clauses(rule.parsed_when)
        clear = clauses(rule.parsed_clear) if rule.parsed_clear else ~on
        metrics = {m for c in rule.parsed_when for m, _, _ in c}
        slots = {m: _slot(rule.kind, m) for m in metrics}
        return self._sensor_findings(
            df, on, clear, lambda r: {**{m: r[s] for m, s in slots.items()}, "at_ms": r["t"],
                                      "when": rule.when}, open_keys, rule.group_by)

    def _rate(self, rule: RateRule, cur: pl.DataFrame, now_ms: int, open_keys: set
              ) -> Evaluation:
        slot = _slot(rule.kind, rule.metric)
        h = self.history.get(rule.kind, pl.DataFrame(schema=_RAW_SCHEMA)).filter(
            (pl.col("t") >= now_ms - int(rule.over_s * 1000))
                                & pl.col(slot).is_not_null())
        if h.is_empty():
            return Evaluation()
        g = h.sort("t").group_by("sensor").agg(
            pl.col("t").first().alias("t0"), pl.col("t").last().alias("t1"),
            pl.col(slot).first().alias("x0"), pl.col(slot).last().alias("x1"),
            pl.col(slot).max().alias("hi"), pl.col(slot).min().alias("lo"))
        share = rule.drop_share if rule.drop_share is not None else rule.rise_share
        if share is not None:  # sudden change: latest vs the window's extreme, as a share
            return self._share(rule, slot, share, g, cur, open_keys)
        g = g.filter(pl.col("t1") - pl.col("t0") >= rule.over_s * 500).with_columns(
            ((pl.col("x1") - pl.col("x0")) / (pl.col("t1") - pl.col("t0")) * 60000)
            .alias("rate"))
        df = self._select(cur.filter(pl.col("kind") == rule.kind), rule.select).drop(
            [c for c in ("rate",) if c in cur.columns]).join(
            g.select("sensor", "rate"), left_on="id", right_on="sensor", how="inner")
        lim = rule.rise_per_min if rule.rise_per_min is not None else rule.fall_per_min
        r_ = pl.col("rate") if rule.rise_per_min is not None else -pl.col("rate")
        return self._sensor_findings(
            df, r_ >= lim, r_ < lim * rule.clear_ratio,
            lambda r: {"metric": rule.metric, "rate_per_min": r["rate"], "limit": lim,
                       "value": r[slot], "over_s": rule.over_s}, open_keys, rule.group_by)

    def _share(self, rule: RateRule, slot: str, share: float, g: pl.DataFrame,
               cur: pl.DataFrame, open_keys: set) -> Evaluation:
        drop = rule.drop_share is not None
        change = ((pl.col("hi") - pl.col("x1")) / pl.col("hi") if drop
                  else (pl.col("x1") - pl.col("lo")) / pl.col("lo"))
        g = g.filter(pl.col("t1") > pl.col("t0")).with_columns(
            pl.when(pl.col("hi" if drop else "lo") > 0).then(change).otherwise(0.0)
            .alias("change"))
        df = self._select(cur.filter(pl.col("kind") == rule.kind), rule.select).join(
            g.select("sensor", "change"), left_on="id", right_on="sensor", how="inner")
        on = (pl.col("change") >= share) & (pl.col(slot) >= rule.min_value)
        return self._sensor_findings(
            df, on, pl.col("change") < share * rule.clear_ratio,
            lambda r: {"metric": rule.metric, "change_share": round(r["change"], 3),
                       "limit_share": share, "value": r[slot], "over_s": rule.over_s},
            open_keys, rule.group_by)

    def _congestion(self, rule: CongestionRule, cur: pl.DataFrame, open_keys: set
                    ) -> Evaluation:
        speed, occ, cnt = (_slot("traffic", m) for m in
                           ("speed_kmh", "occupancy_pct", "vehicle_count"))
        df = self._select(cur.filter((pl.col("kind") == "traffic") & pl.col("fresh")
                                     & (pl.col("segment_id") != "")), rule.select)
        if df.is_empty():
            return Evaluation()
        seg = df.group_by("segment_id").agg(
            pl.col(speed).mean().alias("speed"), pl.col(occ).mean().alias("occ"),
            pl.col(cnt).sum().alias("count"), pl.col("free_flow_kmh").max().alias("ff"),
            pl.col("t").max().alias("t"), pl.col("zone_id").first().alias("zone_id"),
            pl.col("lon").mean().alias("lon"), pl.col("lat").mean().alias("lat"),
            pl.col("sensor_id").alias("sensors"))
        segs = self.city.segments
        ff_model = pl.DataFrame({"segment_id": list(segs),
                                 "ff_model": [s["free_flow_kmh"] for s in segs.values()]},
                                schema={"segment_id": pl.Utf8, "ff_model": pl.Float64})
        seg = seg.join(ff_model, on="segment_id", how="left").with_columns(
            pl.coalesce("ff", "ff_model", pl.lit(rule.default_free_flow_kmh)).alias("ff"))
        seg = seg.with_columns(
            congestion_index(pl.col("speed"), pl.col("ff")).alias("index"))
        on = seg.filter((pl.col("index") >= rule.index_above)
                        & (pl.col("occ").fill_null(100) >= rule.min_occupancy_pct))
        congested = set(on["segment_id"])
        info = {r["segment_id"]: r for r in seg.iter_rows(named=True)}
        ev = Evaluation()
        for sid in sorted(congested):
            if any(x in congested for x in self.city.succ.get(sid, ())):
                continue  # not the head of its queue
            queue, todo, seen = [sid], [sid], {sid}
            while todo:
                for p in self.city.pred.get(todo.pop(), ()):
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

    def _zone_areas(self, df: pl.DataFrame) -> pl.DataFrame:
        zones = self.city.zones
        return pl.DataFrame(
            {"zone_id": list(zones), "zarea": [z["area_m2"] for z in zones.values()],
             "ztype": [z["zone_type"] for z in zones.values()]},
            schema={"zone_id": pl.Utf8, "zarea": pl.Float64, "ztype": pl.Utf8})

    def _zone_finding(self, zid: str, t: int, evidence: dict, scope: tuple = ()) -> Finding:
        z = self.city.zones.get(zid, {})
        return Finding("zone", zid, t, zid, z.get("lon"), z.get("lat"),
                       {"zone_name": z.get("name", zid), **evidence}, scope, z.get("geometry"))

    def _crowd(self, rule: CrowdRule, cur: pl.DataFrame, open_keys: set) -> Evaluation:
        cnt = _slot("people", "people_count")
        df = self._select(cur.filter((pl.col("kind") == "people") & pl.col("fresh")),
                          rule.select)
        if df.is_empty():
            return Evaluation()
        df = df.filter(pl.col(cnt).is_not_null()).with_columns(
            pl.col("area_m2").fill_null(rule.coverage_m2).alias("cover"))
        z = df.group_by("zone_id").agg(
            pl.col(cnt).sum().alias("people"), pl.len().alias("n"),
            density_per_1000m2(pl.col(cnt), pl.col("cover")).mean().alias("per_counter"),
            pl.col("cover").sum().alias("covered"),
            pl.col("t").max().alias("t"), pl.col("zone_type").first().alias("ptype"))
        z = z.join(self._zone_areas(z), on="zone_id", how="left").with_columns(
            pl.coalesce("ztype", "ptype").alias("ztype"))
        if rule.density == "zone":
            z = z.with_columns(pl.col("zarea").alias("area")).filter(pl.col("area") > 0)
            z = z.with_columns(density_per_1000m2(pl.col("people"), pl.col("area"))
                               .alias("density"))
        else:
            z = z.with_columns(pl.col("covered").alias("area"),
                               pl.col("per_counter").alias("density"))
        ev = Evaluation()
        open_ids = {e for k, e in open_keys if k == "zone"}
        for r in z.iter_rows(named=True):
            limit = rule.limit_for(r["zone_id"], r["ztype"])
            if r["density"] >= limit:
                ev.on[("zone", r["zone_id"])] = self._zone_finding(
                    r["zone_id"], int(r["t"]),
                    {"density_per_1000m2": round(r["density"], 1), "limit": limit,
                     "people": r["people"], "area_m2": round(r["area"], 1),
                     "sensors": r["n"], "method": rule.density})
            elif r["zone_id"] in open_ids and r["density"] < limit * rule.clear_ratio:
                ev.clear.add(("zone", r["zone_id"]))
        return ev

    def _flood(self, rule: FloodRule, cur: pl.DataFrame, open_keys: set) -> Evaluation:
        rain, level = _slot("water", "rain_mm_h"), _slot("water", "level_m")
        w = self._select(cur.filter((pl.col("kind") == "water") & pl.col("fresh")),
                         rule.select)
        if w.is_empty():
            return Evaluation()
        lv = self._select(w, rule.level_select)
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
                ev.on[("zone", r["zone_id"])] = self._zone_finding(
                    r["zone_id"], int(r["t"] or 0),
                    {"rain_mm_h": rn, "level_m": lvl, "rain_limit": rule.rain_mm_h,
                     "level_limit": rule.level_m}, tuple(r["high"] or ()))
            elif r["zone_id"] in open_ids and ((rn is not None and rn < crain)
                                               or (lvl is not None and lvl < clevel)):
                ev.clear.add(("zone", r["zone_id"]))
        return ev

    def _offline(self, rule: OfflineRule, cur: pl.DataFrame, now_ms: int, open_keys: set
                 ) -> Evaluation:
        df = cur if rule.kinds is None else cur.filter(pl.col("kind").is_in(rule.kinds))
        df = self._select(df, rule.select)
        assert self.started_ms is not None
        df = df.with_columns(pl.col("t").fill_null(self.started_ms).alias("seen")).with_columns(
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
        gw, ref = self._heartbeats(gw, rule, now_ms)
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

    def _heartbeats(self, gw: pl.DataFrame, rule: OfflineRule, now_ms: int
                    ) -> tuple[pl.DataFrame, int]:
        """Join each gateway's last heartbeat (``hb_ms``) and whether it is ``dark``.

        Dark: no message for ``factor`` x ``GATEWAY_HEARTBEAT_S``, measured against the
        freshest data the store holds (not the clock), so a stalled collector makes no
        gateway look dark.  Returns the frame and that reference time (epoch ms).
        """
        rows = self.conn.execute(
            "SELECT gateway_id, (extract(epoch FROM last_seen) * 1000)::int8 "
            "FROM citypulse.gateway_seen").fetchall()
        hb = pl.DataFrame(rows, schema={"gateway_id": pl.Utf8, "hb_ms": pl.Int64},
                          orient="row")
        fresh = [x for x in (hb["hb_ms"].max(), self.latest["t"].max()) if x is not None]
        ref = min(now_ms, max(fresh)) if fresh else now_ms
        limit = rule.factor * GATEWAY_HEARTBEAT_S * 1000
        gw = gw.join(hb, on="gateway_id", how="left").with_columns(
            (pl.lit(ref) - pl.col("hb_ms") >= limit).fill_null(False).alias("dark"))
        return gw, ref

    def _baseline(self, rule: AnomalyRule, now_ms: int) -> pl.DataFrame:
        cached = self._baselines.get(rule.id)
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
        with self.conn.cursor() as cur, cur.copy(q) as copy:
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
        self._baselines[rule.id] = (now_ms, base)
        return base

    def _anomaly(self, rule: AnomalyRule, cur: pl.DataFrame, now_ms: int, open_keys: set
                 ) -> Evaluation:
        base = self._baseline(rule, now_ms)
        if base.is_empty():
            return Evaluation()
        slot = _slot(rule.kind, rule.metric)
        df = self._select(cur.filter(pl.col("kind") == rule.kind), rule.select).join(
            base, left_on="id", right_on="sensor", how="inner")
        rng = KINDS[rule.kind].metric(rule.metric)
        floor = (rng.max - rng.min) * 0.002 if rng else 1e-6
        df = df.with_columns(
            (0.6745 * (pl.col(slot) - pl.col("med"))
             / pl.max_horizontal(pl.col("mad"), pl.lit(floor))).alias("z"))
        return self._sensor_findings(
            df, pl.col("z").abs() >= rule.z_above, pl.col("z").abs() < rule.clear_z,
            lambda r: {"metric": rule.metric, "value": r[slot], "z": round(r["z"], 2),
                       "median": r["med"], "mad": r["mad"], "samples": r["n"]}, open_keys)

    # --- grouping and lifecycle -----------------------------------------------------------
    def _collapse(self, rule: Any, ev: Evaluation, open_keys: dict, now_ms: int) -> Evaluation:
        city_open = (CITY, CITY) in open_keys
        if not rule.collapse_above or not (len(ev.on) > rule.collapse_above or city_open):
            return ev
        out = Evaluation()
        if ev.on:
            members = tuple(sorted(f"{k}:{e}" for k, e in ev.on))
            since = min(f.since_ms for f in ev.on.values())
            sample = dict(list(ev.on.items())[:5])
            lon, lat, geometry = self._area_place(rule.id, ev.on)
            out.on[(CITY, CITY)] = Finding(
                CITY, CITY, since, CITY, lon, lat,
                {"entities": len(ev.on), "sample": {f"{k}:{e}": f.evidence
                                                    for (k, e), f in sample.items()}},
                members, geometry)
            # members keep their own (already open) alerts out of the queue: regroup them
            for key in ev.on:
                if key in open_keys:
                    out.on[key] = ev.on[key]
        elif city_open:
            out.clear.add((CITY, CITY))
        out.clear |= ev.clear
        return out

    def _area_place(self, rule_id: str, on: dict[tuple[str, str], Finding]
                    ) -> tuple[float | None, float | None, dict | None]:
        """Where a collapsed (many-entity) alert is: its members' outline and a point in it.

        Member zones: the union of their polygons (GeoJSON) and a point inside it (a ring of
        zones around the lake has its centroid in the lake); else the members' points and
        their mean.  Cached per rule and member set: a storm's members stay the same tick
        after tick.
        """
        key = (rule_id, tuple(sorted(on)))
        hit = self._places.get(key)
        if hit is not None:
            return hit
        import shapely
        from shapely.geometry import mapping, shape

        pts = [(f.lon, f.lat) for f in on.values() if f.lon is not None and f.lat is not None]
        zones = [self.city.zones[e]["geometry"] for k, e in on
                 if k == "zone" and e in self.city.zones]
        place: tuple[float | None, float | None, dict | None] = (None, None, None)
        if zones:
            area = shapely.union_all([shape(z) for z in zones]).simplify(1e-4)
            inside = area.representative_point()
            place = (inside.x, inside.y, mapping(area))
        elif pts:
            place = (sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts),
                     mapping(shapely.multipoints(pts)))
        if len(self._places) > 256:
            self._places.clear()
        self._places[key] = place
        return place

    def _apply(self, rule: Any, ev: Evaluation, open_keys: dict, now: datetime, now_ms: int
               ) -> tuple[int, int]:
        opened = resolved = 0
        rid = rule.id
        for key in [k for k in self.on_since if k[0] == rid and (k[1], k[2]) not in ev.on]:
            del self.on_since[key]
        # an alert resolved by a person while its condition still holds: it may come back,
        # but only after the condition held again for max(for_s, clear_for_s)
        for kind, ent in self._was_open.get(rid, set()) - set(open_keys):
            if (kind, ent) in ev.on:
                self._hold_until[(rid, kind, ent)] = now_ms + int(
                    max(rule.for_s, rule.clear_for_s) * 1000)
        self._was_open[rid] = set(open_keys)
        covered: dict[str, int] = {}
        for (kind, ent), f in ev.on.items():
            tkey = (rid, kind, ent)
            since = self.on_since.setdefault(tkey, min(f.since_ms, now_ms))
            self.off_since.pop(tkey, None)
            existing = open_keys.get((kind, ent))
            if existing is None and (now_ms < self._hold_until.get(tkey, 0)
                                     or self._superseding(rid, kind, ent) is not None):
                continue  # held back after a manual resolve, or a higher alert covers it
            if existing is None and now_ms - since >= rule.for_s * 1000:
                self._hold_until.pop(tkey, None)
                started, evidence = self._history(rid, kind, ent, f, since)
                alert = lifecycle.open_alert(self.conn, lifecycle.NewAlert(
                    rule=rid, entity_kind=kind, entity_id=ent, severity=rule.severity,
                    title=_title(rule, kind, ent), started_at=started,
                    zone_id=_zone_topic_id(f.zone_id), lon=f.lon, lat=f.lat,
                    geometry=f.geometry, scope=f.scope, evidence=evidence), now=now)
                if alert is not None:
                    opened += 1
                    self._open[(rid, kind, ent)] = {"id": alert.id, "status": alert.status,
                                                    "scope": alert.scope,
                                                    "started_at": alert.started_at}
                    self._was_open[rid].add((kind, ent))
                    self._last_update[alert.id] = now_ms
                    self._deliver(alert, "open")
                    if f.scope:
                        covered.update({m: alert.id for m in f.scope})
            elif existing is not None:
                if f.scope:
                    covered.update({m: existing["id"] for m in f.scope})
                last = self._last_update.get(existing["id"], 0)
                if now_ms - last >= self.rules.update_every_s * 1000:
                    self._last_update[existing["id"]] = now_ms
                    lifecycle.update_alert(self.conn, existing["id"], evidence=f.evidence,
                                           scope=list(f.scope) if f.scope else None, now=now,
                                           place=(f.lon, f.lat, f.geometry))
        for (kind, ent), a in open_keys.items():
            tkey = (rid, kind, ent)
            member = covered.get(ent) or covered.get(f"{kind}:{ent}")
            if member and member != a["id"]:
                if self._resolve(a["id"], "regroup", f"grouped into alert {member}", now):
                    resolved += 1
                    self._was_open[rid].discard((kind, ent))
                continue
            if (kind, ent) in ev.on:
                continue
            if (kind, ent) in ev.clear:
                since = self.off_since.setdefault(tkey, now_ms)
                if now_ms - since >= rule.clear_for_s * 1000:
                    self.off_since.pop(tkey, None)
                    if self._resolve(a["id"], "auto_resolve", "condition cleared", now):
                        resolved += 1
                        self._was_open[rid].discard((kind, ent))
            else:
                self.off_since.pop(tkey, None)
        return opened, resolved

    # --- supersession: one open alert per incident -------------------------------------------
    def _covers(self, kind: str, ent: str, scope: Any, low_kind: str, low_ent: str) -> bool:
        downstream = self.city.succ.get(low_ent, ()) if low_kind == "segment" else ()
        return _covers(kind, ent, scope, low_kind, low_ent, downstream)

    def _superseding(self, rule_id: str, kind: str, ent: str) -> dict | None:
        """An open alert of a higher rule covering (rule_id, kind, ent), or None."""
        for (hr, hk, he), h in self._open.items():
            if rule_id in self._supersedes.get(hr, ()) and self._covers(hk, he, h["scope"],
                                                                        kind, ent):
                return h
        return None

    def _history(self, rule_id: str, kind: str, ent: str, f: Finding, since_ms: int
                 ) -> tuple[datetime, dict]:
        """started_at and evidence of a new alert, taking over covered lower alerts' history."""
        started = datetime.fromtimestamp(since_ms / 1000, UTC)
        lows = self._supersedes.get(rule_id)
        if not lows:
            return started, f.evidence
        taken = sorted(((lr, a) for (lr, lk, le), a in self._open.items()
                        if lr in lows and self._covers(kind, ent, f.scope, lk, le)),
                       key=lambda x: x[1]["started_at"])
        if not taken:
            return started, f.evidence
        return min(started, taken[0][1]["started_at"]), {
            **f.evidence, "supersedes": [{"id": a["id"], "rule": lr,
                                          "started": a["started_at"].isoformat()}
                                         for lr, a in taken]}

    def _supersede(self, now: datetime) -> int:
        """Resolve open alerts covered by an open alert of a rule that supersedes theirs."""
        if not self._supersedes:
            return 0
        open_alerts = self._open_alerts()
        done: set[int] = set()
        resolved = 0
        for (hr, hk, he), h in open_alerts.items():
            lows = self._supersedes.get(hr)
            if not lows:
                continue
            for (lr, lk, le), a in open_alerts.items():
                if lr in lows and a["id"] not in done and self._covers(hk, he, h["scope"], lk,
                                                                       le):
                    done.add(a["id"])
                    if self._resolve(a["id"], "supersede",
                                     f"superseded by alert {h['id']} ({hr})", now):
                        resolved += 1
                        self._was_open.get(lr, set()).discard((lk, le))
        return resolved

    def _resolve(self, alert_id: int, action: str, note: str, now: datetime) -> bool:
        try:
            alert = lifecycle.resolve(self.conn, alert_id, lifecycle.SYSTEM, note, now=now,
                                      action=action)
        except lifecycle.AlertError:
            return False  # resolved meanwhile by a person
        self._deliver(alert, "resolve")
        return True

    def escalate_due(self, now: datetime | None = None) -> int:
        """Escalate open critical alerts unacknowledged for ``escalate_after_s``."""
        n = 0
        for aid in lifecycle.due_for_escalation(self.conn, self.rules.escalate_after_s, now):
            try:
                alert = lifecycle.escalate(
                    self.conn, aid, lifecycle.SYSTEM,
                    f"unacknowledged for {self.rules.escalate_after_s:.0f} s", now=now)
            except lifecycle.AlertError:
                continue
            n += 1
            self._deliver(alert, "escalate")
        return n

    def _deliver(self, alert: lifecycle.Alert, event: str) -> None:
        if self.delivery is None:
            return
        try:
            self.delivery.send(alert, event)
        except Exception:  # delivery problems are recorded there; never stop the engine
            log.exception("delivery of alert %s failed", alert.id)


def _expr_op(c: pl.Expr, op: str, val: float) -> pl.Expr:
    f = op_func(op)
    return f(c, val)


def _covers(kind: str, ent: str, scope: Any, low_kind: str, low_ent: str,
            downstream: Any = ()) -> bool:
    """Whether an alert on (kind, ent) with ``scope`` concerns the place of (low_kind, low_ent).

    Same entity, or the lower entity is a member of the scope (``"kind:id"`` or plain id).
    A road segment is also covered when a segment just downstream of it is: a queue growing
    upstream is the same incident, not a new one.
    """
    members = set(scope or ())
    if (kind, ent) == (low_kind, low_ent) or low_ent in members \
            or f"{low_kind}:{low_ent}" in members:
        return True
    if low_kind != "segment":
        return False
    if kind == "segment":
        members.add(ent)
    return any(d in members or f"segment:{d}" in members for d in downstream)


def _title(rule: Any, kind: str, ent: str) -> str:
    if kind == CITY:
        return f"{rule.label} (city-wide)"
    return f"{rule.label}: {kind} {ent}"
