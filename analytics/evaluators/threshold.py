"""Per-sensor levels: ``threshold`` (one metric above/below) and ``fire``/``gas``/``condition``."""

from __future__ import annotations

import polars as pl

from analytics.findings import Evaluation, evaluator, select, sensor_findings, slot
from analytics.rule_types import ConditionRule, ThresholdRule, op_func


@evaluator("threshold")
def threshold(rule: ThresholdRule, cur: pl.DataFrame, now_ms: int, open_keys: set, ctx
              ) -> Evaluation:
    """ON above (below) the level, CLEAR at or below (above) ``clear`` (hysteresis)."""
    df = select(cur.filter(pl.col("kind") == rule.kind), rule.select)
    col = slot(rule.kind, rule.metric)
    v = pl.col(col)
    if rule.above is not None:
        on, lvl = v > rule.above, rule.above
        clear = v <= (rule.clear if rule.clear is not None else rule.above)
    else:
        on, lvl = v < rule.below, rule.below
        clear = v >= (rule.clear if rule.clear is not None else rule.below)
    return sensor_findings(
        df, on, clear, lambda r: {"metric": rule.metric, "value": r[col],
                                  "threshold": lvl, "at_ms": r["t"]}, open_keys,
        rule.group_by)


@evaluator("fire", "gas", "condition")
def condition(rule: ConditionRule, cur: pl.DataFrame, now_ms: int, open_keys: set, ctx
              ) -> Evaluation:
    """ON when any ``when`` clause holds (all its comparisons), CLEAR by ``clear`` or not ON."""
    df = select(cur.filter(pl.col("kind") == rule.kind), rule.select)

    def clauses(parsed: list) -> pl.Expr:
        exprs = []
        for clause in parsed:
            e = pl.lit(True)
            for metric, op, val in clause:
                e = e & op_func(op)(pl.col(slot(rule.kind, metric)), val).fill_null(False)
            exprs.append(e)
        return pl.any_horizontal(exprs)

    on = clauses(rule.parsed_when)
    clear = clauses(rule.parsed_clear) if rule.parsed_clear else ~on
    metrics = {m for c in rule.parsed_when for m, _, _ in c}
    slots = {m: slot(rule.kind, m) for m in metrics}
    return sensor_findings(
        df, on, clear, lambda r: {**{m: r[s] for m, s in slots.items()}, "at_ms": r["t"],
                                  "when": rule.when}, open_keys, rule.group_by)
