"""Alert rule types: one typed model per ``type:`` of ``rules.yaml``.

Rule types (``type:``) and their targets:

- ``threshold`` (sensor): one metric ``above`` or ``below`` a value, cleared at ``clear``.
- ``rate_of_change`` (sensor): a metric rising (``rise_per_min``) or falling
  (``fall_per_min``) faster than given, measured over ``over_s`` seconds; or a sudden change
  as a share: the latest value ``drop_share`` below the window's highest (a speed collapse)
  or ``rise_share`` above its lowest (a crowd surge), with the latest value at least
  ``min_value`` (rise) -- these fire on the first reading after the change.
- ``fire`` / ``gas`` / ``condition`` (sensor): ``when`` is a list of clauses, any of which
  fires; a clause maps metrics to tests (``">= 60"``), all of which must hold.
- ``congestion`` (segment): congestion index ``1 - speed / free-flow speed`` above
  ``index_above``; the alert sits on the queue's head and its scope is the queue extent
  (the contiguous congested segments upstream).
- ``crowd`` (zone): people density (persons per 1,000 m2) above the zone's limit.
- ``flood`` (zone): rain above ``rain_mm_h`` and a (drain) level above ``level_m`` together.
- ``offline`` (sensor, grouped by gateway): no data for ``factor`` x its interval.
- ``anomaly`` (sensor): robust z-score against the same time of day on previous days.

Common fields: ``id``, ``severity`` (info|warning|critical), ``for_s`` (the condition must hold
this long before the alert opens), ``clear_for_s`` (the clear condition must hold this long
before the alert auto-resolves: hysteresis together with the separate clear level),
``collapse_above`` (more entities than this at once give one city-wide alert with the list as
its scope), ``group_by`` (sensor rules: one alert per ``building_id``/``zone_id``/... with its
sensors as scope), ``select`` (sensor ``props`` that must match, e.g. ``{role: drain}``),
``supersedes`` (ids of lower rules whose alerts for the same place this rule's alert takes
over: same entity, or the lower alert's entity in this alert's scope; no unknown ids, no
cycles).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from functools import cached_property
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from citypulse.catalogue import KINDS

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt,
    "==": operator.eq, "!=": operator.ne,
}
_TEST_RE = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*$")


def parse_test(text: str) -> tuple[str, float]:
    """``">= 60"`` -> ``(">=", 60.0)``; raises ValueError on anything else."""
    m = _TEST_RE.match(str(text))
    if not m:
        raise ValueError(f"test {text!r} is not '<op> <number>' with op one of {list(_OPS)}")
    return m.group(1), float(m.group(2))


def op_func(op: str) -> Callable[[float, float], bool]:
    """The comparison function of an operator string."""
    return _OPS[op]


def _check_metric(kind: str, metric: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown sensor kind {kind!r}; known: {', '.join(KINDS)}")
    if KINDS[kind].metric(metric) is None:
        names = ", ".join(m.name for m in KINDS[kind].metrics)
        raise ValueError(f"kind {kind!r} has no metric {metric!r}; it has: {names}")


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)
    title: str = ""
    description: str = ""
    severity: Severity
    enabled: bool = True
    for_s: float = Field(0.0, ge=0)
    clear_for_s: float = Field(30.0, ge=0)
    collapse_above: int | None = Field(None, ge=1)
    select: dict[str, str] = Field(default_factory=dict)
    group_by: Literal["building_id", "zone_id", "gateway_id", "segment_id"] | None = Field(
        None, description="sensor rules: one alert per building/zone/... with the sensors "
                          "as its scope")
    supersedes: list[str] = Field(
        default_factory=list, description="rule ids whose alerts for the same place this "
                                          "rule's alert takes over (one alert per incident)")

    @property
    def label(self) -> str:
        """Human title (the id when none is given)."""
        return self.title or self.id.replace("_", " ")


class ThresholdRule(_Rule):
    """A sensor metric above (or below) a level, cleared at a separate level."""

    type: Literal["threshold"]
    target: Literal["sensor"] = "sensor"
    kind: str
    metric: str
    above: float | None = None
    below: float | None = None
    clear: float | None = None

    @model_validator(mode="after")
    def _check(self) -> ThresholdRule:
        _check_metric(self.kind, self.metric)
        if (self.above is None) == (self.below is None):
            raise ValueError("give exactly one of 'above' or 'below'")
        if self.clear is not None:
            if self.above is not None and self.clear > self.above:
                raise ValueError("'clear' must be <= 'above' (hysteresis)")
            if self.below is not None and self.clear < self.below:
                raise ValueError("'clear' must be >= 'below' (hysteresis)")
        return self


class RateRule(_Rule):
    """A sensor metric changing faster than a rate (per minute) over a window."""

    type: Literal["rate_of_change"]
    target: Literal["sensor"] = "sensor"
    kind: str
    metric: str
    rise_per_min: float | None = Field(None, gt=0)
    fall_per_min: float | None = Field(None, gt=0)
    drop_share: float | None = Field(None, gt=0, lt=1)
    rise_share: float | None = Field(None, gt=0)
    min_value: float = 0.0
    over_s: float = Field(300.0, gt=0)
    clear_ratio: float = Field(0.5, ge=0, le=1)

    @model_validator(mode="after")
    def _check(self) -> RateRule:
        _check_metric(self.kind, self.metric)
        given = [x for x in (self.rise_per_min, self.fall_per_min, self.drop_share,
                             self.rise_share) if x is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'rise_per_min', 'fall_per_min', "
                             "'drop_share' or 'rise_share'")
        return self


Clause = dict[str, str]


class ConditionRule(_Rule):
    """Any of several clauses (each: all of its metric tests) on one sensor kind."""

    type: Literal["fire", "gas", "condition"]
    target: Literal["sensor"] = "sensor"
    kind: str
    when: list[Clause] = Field(min_length=1)
    clear_when: list[Clause] | None = None

    @model_validator(mode="after")
    def _check(self) -> ConditionRule:
        for clause in (self.when or []) + (self.clear_when or []):
            if not clause:
                raise ValueError("a clause needs at least one 'metric: <op> <number>' test")
            for metric, test in clause.items():
                _check_metric(self.kind, metric)
                parse_test(test)
        return self

    @cached_property
    def parsed_when(self) -> list[list[tuple[str, str, float]]]:
        """``when`` as lists of (metric, op, value)."""
        return [[(m, *parse_test(t)) for m, t in c.items()] for c in self.when]

    @cached_property
    def parsed_clear(self) -> list[list[tuple[str, str, float]]] | None:
        """``clear_when`` parsed, or None (clear = no ``when`` clause holds)."""
        if self.clear_when is None:
            return None
        return [[(m, *parse_test(t)) for m, t in c.items()] for c in self.clear_when]


class CongestionRule(_Rule):
    """Congestion index above a level on a road segment; scope = the queue upstream."""

    type: Literal["congestion"]
    target: Literal["segment"] = "segment"
    index_above: float = Field(0.6, gt=0, le=1)
    clear_below: float = Field(0.45, ge=0, le=1)
    default_free_flow_kmh: float = Field(50.0, gt=0)
    min_occupancy_pct: float = Field(5.0, ge=0, description="an empty road is not congested")

    @model_validator(mode="after")
    def _check(self) -> CongestionRule:
        if self.clear_below > self.index_above:
            raise ValueError("'clear_below' must be <= 'index_above' (hysteresis)")
        return self


class CrowdRule(_Rule):
    """People density in a zone above its limit (persons per 1,000 m2)."""

    type: Literal["crowd"]
    target: Literal["zone"] = "zone"
    default_limit: float | None = Field(
        None, gt=0, description="persons per 1,000 m2 for a zone the city model does not know "
        "(default: the catalogue's limit of its type, else of 'mixed')")
    limits: dict[str, float] = Field(default_factory=dict, description="per zone id only: "
                                     "the limits per zone type are the catalogue's "
                                     "(citypulse.city.model.ZONE_TYPES)")
    clear_ratio: float = Field(0.85, gt=0, le=1)
    density: Literal["per_counter", "zone"] = Field(
        "per_counter", description="per_counter: mean over the zone's counters of count / "
        "covered area (props area_m2, else coverage_m2); zone: sum of counts / zone area")
    coverage_m2: float = Field(10_000.0, gt=0, description="area one counter covers")

    @field_validator("limits")
    @classmethod
    def _by_zone_id(cls, v: dict[str, float]) -> dict[str, float]:
        from citypulse.city.model import ZONE_TYPES

        typed = sorted(set(v) & set(ZONE_TYPES))
        if typed:
            raise ValueError(f"limits by zone type ({', '.join(typed)}) are set once, in the "
                             "catalogue of zone types (citypulse.city.model.ZONE_TYPES); "
                             "here name zone ids only")
        return v

    def limit_for(self, zone_id: str, zone_type: str | None = None,
                  zone_limit: float | None = None) -> float:
        """The density limit of a zone: by id here, else the city model's (its type's)."""
        from citypulse.city.model import ZONE_TYPES, density_limit

        if zone_id in self.limits:
            return self.limits[zone_id]
        if zone_limit is not None and zone_limit > 0:
            return zone_limit
        if self.default_limit is not None and zone_type not in ZONE_TYPES:
            return self.default_limit
        return density_limit(zone_type)


class FloodRule(_Rule):
    """Rain and a water level together above their levels in one zone."""

    type: Literal["flood"]
    target: Literal["zone"] = "zone"
    rain_mm_h: float = Field(gt=0)
    level_m: float
    clear_rain_mm_h: float | None = None
    clear_level_m: float | None = None
    level_select: dict[str, str] = Field(default_factory=dict,
                                         description="props of the level gauges to use")


class OfflineRule(_Rule):
    """No data from a sensor for ``factor`` x its interval; whole gateways grouped."""

    type: Literal["offline"]
    target: Literal["sensor"] = "sensor"
    factor: float = Field(3.0, ge=1)
    gateway_fraction: float = Field(0.8, gt=0, le=1)
    min_gateway_sensors: int = Field(2, ge=1)
    kinds: list[str] | None = None


class AnomalyRule(_Rule):
    """Robust z-score of a metric against the same time of day on previous days."""

    type: Literal["anomaly"]
    target: Literal["sensor"] = "sensor"
    kind: str
    metric: str
    z_above: float = Field(6.0, gt=0)
    clear_z: float = Field(3.0, gt=0)
    days: int = Field(7, ge=1, le=60)
    window_min: int = Field(15, ge=1, le=180)
    min_samples: int = Field(20, ge=3)
    refresh_s: float = Field(300.0, ge=1)

    @model_validator(mode="after")
    def _check(self) -> AnomalyRule:
        _check_metric(self.kind, self.metric)
        return self


Rule = Annotated[
    ThresholdRule | RateRule | ConditionRule | CongestionRule | CrowdRule | FloodRule
    | OfflineRule | AnomalyRule,
    Field(discriminator="type"),
]
