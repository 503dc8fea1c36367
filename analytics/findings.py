"""What rule evaluators produce, the helpers they share, and their registry by rule type.

In: a rule, the current frame (latest reading per sensor joined with the registry: ``id``,
``sensor_id``, ``kind``, ``zone_id``, ``segment_id``, ``lon``, ``lat``, ``t``, ``fresh`` and
the slot columns ``v0..``), the time and the open alerts' keys.  Out: an
:class:`Evaluation` (entities ON with a :class:`Finding`, open entities now CLEAR).  An
evaluator is a function registered with :func:`evaluator` for one or more rule ``type``
values; :mod:`analytics.evaluators` imports the built-in families.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from citypulse.catalogue import MAX_SLOTS, columns

CITY = "city"
SLOTS = [f"v{i}" for i in range(MAX_SLOTS)]
RAW_SCHEMA = {"sensor": pl.Int32, "t": pl.Int64, **{s: pl.Float64 for s in SLOTS}}


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


# evaluator(rule, cur, now_ms, open_keys, ctx) -> Evaluation; ctx is the engine (city, conn,
# window, started_ms, cache)
Evaluator = Callable[[Any, pl.DataFrame, int, set, Any], Evaluation]
EVALUATORS: dict[str, Evaluator] = {}


def evaluator(*rule_types: str) -> Callable[[Evaluator], Evaluator]:
    """Register a function as the evaluator of rules of these ``type`` values."""
    def add(fn: Evaluator) -> Evaluator:
        for t in rule_types:
            if t in EVALUATORS:
                raise ValueError(f"rule type {t!r} has two evaluators")
            EVALUATORS[t] = fn
        return fn
    return add


def slot(kind: str, metric: str) -> str:
    """The raw column (``vN``) that holds ``metric`` of sensors of ``kind``."""
    return columns(kind)[metric]


def select(df: pl.DataFrame, sel: dict[str, str]) -> pl.DataFrame:
    """Rows whose columns equal the rule's ``select`` values (unknown columns ignored)."""
    for k, v in sel.items():
        if k in df.columns:
            df = df.filter(pl.col(k) == v)
    return df


def sensor_findings(df: pl.DataFrame, on: pl.Expr, clear: pl.Expr,
                    evidence: Callable[[dict], dict], open_keys: set,
                    group_by: str | None = None) -> Evaluation:
    """Per-sensor ON/CLEAR from two boolean expressions, or per group (``group_by``)."""
    df = df.with_columns(on.fill_null(False).alias("_on"), clear.fill_null(False)
                         .alias("_clear"))
    ev = Evaluation()
    if group_by:  # sensors without the group property stay on their own
        ev = _grouped_findings(df, group_by, evidence, open_keys)
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


def _grouped_findings(df: pl.DataFrame, group_by: str, evidence: Callable[[dict], dict],
                      open_keys: set) -> Evaluation:
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


def zone_finding(city: Any, zid: str, t: int, evidence: dict, scope: tuple = ()) -> Finding:
    """A finding on a zone, placed at the zone's centre with its outline."""
    z = city.zones.get(zid, {})
    return Finding("zone", zid, t, zid, z.get("lon"), z.get("lat"),
                   {"zone_name": z.get("name", zid), **evidence}, scope, z.get("geometry"))
