"""Actuator kinds and the command catalogue: what citypulse can tell each kind of device to do.

In: nothing (it is data).  Out: :data:`ACTUATORS` (kind name -> :class:`~citypulse.catalogue.Kind`,
their telemetry like any sensor's), :data:`DEVICE_KINDS` (sensor and actuator kinds) and
:func:`methods` / :func:`method` giving each kind's :class:`Method` s: the params model (its
JSON schema is ``Method.schema``), the risk level, the expected effect, whether commands to
one device run one at a time, the precondition checked before sending (by name, see
:mod:`control.policy`) and whether it travels through the device shadow::

    m = method("pump", "start")
    params = m.validate({"flow_m3_h": 800})     # ParamsError naming the field and the fix
    m.risk                                       # "low" | "medium" | "high" (high: 2 people)

``set_interval`` exists for every kind (sensors too) and is applied through the versioned
desired/reported shadow (``{prefix}/v1/shadow/{device}/desired``), not as a one-off command.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from citypulse.catalogue import HEALTH, KINDS, Kind, Metric

RISKS = ("low", "medium", "high")


class ParamsError(ValueError):
    """A command's params do not fit the method's schema; the message names field and fix."""


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(_Params):
    """No parameters."""


class PumpStart(_Params):
    """Start a drainage pump at a flow rate."""

    flow_m3_h: float = Field(600.0, ge=50, le=2000, description="pumping rate, m3/h")


class SignShow(_Params):
    """Show a message on a variable message sign."""

    text: str = Field(min_length=1, max_length=120, description="message, at most 120 chars")
    priority: Literal["info", "warning", "danger"] = "warning"


class SetPlan(_Params):
    """Switch a signal controller to a timing plan."""

    plan: int = Field(ge=1, le=9, description="1 normal, 2 peak, 3 evacuation outbound, "
                                              "4 emergency corridor, 9 all-red flash")
    duration_s: int = Field(1800, ge=60, le=86400, description="then back to plan 1")


class SirenSound(_Params):
    """Sound a warning siren."""

    pattern: Literal["alert", "evacuate", "all_clear"] = "alert"
    duration_s: int = Field(120, ge=10, le=1800)


class SetInterval(_Params):
    """Set the device's reporting interval (through the shadow)."""

    interval_s: float = Field(ge=1, le=3600, description="seconds between reports")


@dataclass(frozen=True)
class Method:
    """One command a kind accepts."""

    name: str
    params: type[_Params]
    risk: str
    effect: str
    sequential: bool = True            # one command at a time per device, in request order
    precondition: str | None = None    # a control.policy check by name
    shadow: bool = False               # applied through desired/reported state
    schema: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.risk not in RISKS:
            raise ValueError(f"method {self.name}: risk {self.risk!r} not in {RISKS}")
        object.__setattr__(self, "schema", self.params.model_json_schema())

    def validate(self, params: Any) -> dict:
        """``params`` checked against the schema, defaults filled in; raises ParamsError."""
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise ParamsError(f"{self.name}: params must be a JSON object, got {params!r}")
        try:
            return self.params.model_validate(params).model_dump()
        except ValidationError as exc:
            parts = []
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"]) or "params"
                parts.append(f"{where}: {err['msg']}")
            props = ", ".join(self.schema.get("properties", {})) or "none"
            raise ParamsError(f"{self.name}: " + "; ".join(parts)
                              + f" (params of {self.name}: {props})") from None

    def describe(self) -> dict:
        """JSON-ready description (for the API and docs)."""
        return {"method": self.name, "risk": self.risk, "effect": self.effect,
                "sequential": self.sequential, "precondition": self.precondition,
                "shadow": self.shadow, "params_schema": self.schema}


SET_INTERVAL = Method("set_interval", SetInterval, "low",
                      "the device reports every interval_s seconds (desired state in its "
                      "shadow; applied when it next connects)", shadow=True)


def _actuator(name: str, desc: str, interval: float, placement: str, *ms: Metric) -> Kind:
    return Kind(name, desc, interval, placement, tuple(ms) + HEALTH)


_KINDS = (
    _actuator("pump", "drainage pump in a storm-water sump", 10, "point",
              Metric("running", "bool", 0, 1, "pump running (0/1)"),
              Metric("flow_m3_h", "m3/h", 0, 5000, "pumped flow"),
              Metric("sump_level_m", "m", -5, 20, "water level in the sump above its floor")),
    _actuator("sign", "variable message sign over a road segment", 30, "segment",
              Metric("showing", "bool", 0, 1, "a message is shown (0/1)")),
    _actuator("signal", "traffic signal controller at a junction", 30, "segment",
              Metric("plan", "id", 0, 99, "active timing plan"),
              Metric("cycle_s", "s", 0, 600, "cycle length")),
    _actuator("siren", "public warning siren", 30, "point",
              Metric("sounding", "bool", 0, 1, "siren sounding (0/1)")),
)

ACTUATORS: MappingProxyType = MappingProxyType({k.name: k for k in _KINDS})
DEVICE_KINDS: MappingProxyType = MappingProxyType({**KINDS, **ACTUATORS})

_METHODS: dict[str, tuple[Method, ...]] = {
    "pump": (
        Method("start", PumpStart, "medium", "the pump runs: its sump and the zone's drain "
               "levels fall", precondition="sump_not_dry"),
        Method("stop", NoParams, "low", "the pump stops"),
    ),
    "sign": (
        Method("show", SignShow, "medium", "drivers passing the segment read the text"),
        Method("clear", NoParams, "low", "the sign goes blank"),
    ),
    "signal": (
        Method("set_plan", SetPlan, "high", "the junction runs the plan: the segment's "
               "speed and capacity change"),
    ),
    "siren": (
        Method("sound", SirenSound, "high", "the siren sounds across its zone",
               precondition="critical_alert_in_zone"),
        Method("stop", NoParams, "low", "the siren stops"),
    ),
}

METHODS: MappingProxyType = MappingProxyType({
    k: MappingProxyType({m.name: m for m in (*_METHODS.get(k, ()), SET_INTERVAL)})
    for k in DEVICE_KINDS})


def methods(kind: str) -> MappingProxyType:
    """Methods of ``kind`` by name; KeyError naming the known kinds."""
    try:
        return METHODS[kind]
    except KeyError:
        raise KeyError(f"unknown device kind {kind!r}; known: {', '.join(METHODS)}") from None


def method(kind: str, name: str) -> Method:
    """The method ``name`` of ``kind``; KeyError naming the kind's methods."""
    ms = methods(kind)
    try:
        return ms[name]
    except KeyError:
        raise KeyError(f"kind {kind!r} has no method {name!r}; it has: "
                       f"{', '.join(ms)}") from None
