"""The one catalogue of sensor kinds and their metrics, read by every stage.

In: nothing (it is data).  Out: :data:`KINDS`, a mapping ``kind name -> Kind``; each
:class:`Kind` lists its :class:`Metric` s (unit, physical range) in a fixed order, its
nominal reporting interval and its typical placement.  Device-health metrics
(``battery_pct``, ``rssi_dbm``) belong to every kind.

A metric's position in ``Kind.metrics`` is its *slot*: the store keeps one row per reading
with one column per slot (``v0`` .. ``v7``), so the order here is part of the schema.
Append new metrics at the end of a kind, before the health metrics, never reorder.

Actuator kinds (pumps, signs, signal controllers, sirens) and their command catalogue are in
:mod:`citypulse.actuators`: :data:`ACTUATORS` (kind name -> Kind) and :data:`DEVICE_KINDS`
(sensors and actuators); :data:`KINDS` holds the sensing kinds only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

MAX_SLOTS = 8


@dataclass(frozen=True, slots=True)
class Metric:
    """One measured quantity: its name, unit and physical range (inclusive)."""

    name: str
    unit: str
    min: float
    max: float
    description: str = ""

    def in_range(self, value: float) -> bool:
        """Whether ``value`` is physically possible for this metric."""
        return self.min <= value <= self.max


@dataclass(frozen=True, slots=True)
class Kind:
    """A kind of sensor: what it measures, how often, and where it sits."""

    name: str
    description: str
    interval_s: float
    placement: str  # "segment", "zone", "vehicle", "point"
    metrics: tuple[Metric, ...]
    slot_of: MappingProxyType = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.metrics) > MAX_SLOTS:
            raise ValueError(f"kind {self.name} has more than {MAX_SLOTS} metrics")
        slots = {m.name: i for i, m in enumerate(self.metrics)}
        object.__setattr__(self, "slot_of", MappingProxyType(slots))

    def metric(self, name: str) -> Metric | None:
        """The metric called ``name``, or None when the kind has no such metric."""
        i = self.slot_of.get(name)
        return None if i is None else self.metrics[i]


HEALTH = (
    Metric("battery_pct", "%", 0, 100, "battery charge"),
    Metric("rssi_dbm", "dBm", -140, 0, "radio signal strength"),
)


def _kind(name: str, desc: str, interval: float, placement: str, *ms: Metric) -> Kind:
    return Kind(name, desc, interval, placement, tuple(ms) + HEALTH)


_ALL = (
    _kind(
        "traffic", "induction loop or camera on a directed road segment", 10, "segment",
        Metric("vehicle_count", "veh", 0, 1000, "vehicles passed in the interval"),
        Metric("speed_kmh", "km/h", 0, 250, "mean speed of passing vehicles"),
        Metric("occupancy_pct", "%", 0, 100, "share of time the detector is occupied"),
    ),
    _kind(
        "people", "people counter in a zone or at a gate", 15, "zone",
        Metric("people_count", "persons", 0, 200_000, "persons present in the covered area"),
        Metric("entries", "persons", 0, 20_000, "persons entering in the interval"),
        Metric("exits", "persons", 0, 20_000, "persons leaving in the interval"),
    ),
    _kind(
        "logistics", "GPS tracker on a truck or container", 10, "vehicle",
        Metric("lon", "deg", -180, 180, "WGS84 longitude"),
        Metric("lat", "deg", -90, 90, "WGS84 latitude"),
        Metric("speed_kmh", "km/h", 0, 200, "ground speed"),
        Metric("heading_deg", "deg", 0, 360, "course over ground"),
        Metric("load_kg", "kg", 0, 60_000, "cargo load"),
    ),
    _kind(
        "air", "air-quality station", 60, "point",
        Metric("pm25_ugm3", "ug/m3", 0, 1000, "fine particulate matter PM2.5"),
        Metric("pm10_ugm3", "ug/m3", 0, 2000, "particulate matter PM10"),
        Metric("no2_ugm3", "ug/m3", 0, 2000, "nitrogen dioxide"),
    ),
    _kind(
        "water", "lake or drain level gauge, rain gauge", 30, "point",
        Metric("level_m", "m", -10, 50, "water level above datum"),
        Metric("rain_mm_h", "mm/h", 0, 500, "rain intensity"),
    ),
    _kind(
        "fire", "smoke and heat detector in a building", 15, "point",
        Metric("smoke_pct", "%/m", 0, 100, "smoke obscuration"),
        Metric("temperature_c", "degC", -40, 1200, "air temperature"),
        Metric("alarm", "bool", 0, 1, "detector alarm state (0/1)"),
    ),
    _kind(
        "gas", "combustible and toxic gas detector", 15, "point",
        Metric("ch4_lel_pct", "%LEL", 0, 100, "methane, percent of lower explosive limit"),
        Metric("co_ppm", "ppm", 0, 5000, "carbon monoxide"),
    ),
    _kind(
        "noise", "sound level meter", 60, "point",
        Metric("laeq_db", "dB(A)", 0, 160, "equivalent continuous sound level"),
    ),
)

KINDS: MappingProxyType = MappingProxyType({k.name: k for k in _ALL})


def kind(name: str) -> Kind:
    """The kind called ``name``; raises KeyError naming the known kinds."""
    try:
        return KINDS[name]
    except KeyError:
        raise KeyError(f"unknown sensor kind {name!r}; known: {', '.join(KINDS)}") from None


def device_kind(name: str) -> Kind | None:
    """The sensor or actuator kind called ``name`` (None when neither exists)."""
    return KINDS.get(name) or ACTUATORS.get(name)


def metric_rows() -> list[tuple[str, int, str, str, float, float, str]]:
    """Rows ``(kind, slot, metric, unit, min, max, description)`` for the store's catalogue."""
    return [
        (k.name, i, m.name, m.unit, m.min, m.max, m.description)
        for k in (*_ALL, *ACTUATORS.values())
        for i, m in enumerate(k.metrics)
    ]


def columns(kind: str, prefix: str = "v") -> dict[str, str]:
    """Metric name -> store column of a kind, derived from the slot order.

    ``prefix`` ``v``: ``citypulse.raw``'s value column; ``s``/``c``/``lo``/``hi``:
    ``citypulse.rollup_1m``'s sum, count, min and max of the minute.  Modules use this
    instead of typing slot columns (``v1``, ``s0``...) by hand.
    """
    return {m: f"{prefix}{i}" for m, i in KINDS[kind].slot_of.items()}


# Actuators (devices citypulse can command) live in citypulse.actuators; imported last
# because they are built from Kind and Metric above.
from citypulse.actuators import ACTUATORS, DEVICE_KINDS  # noqa: E402, F401 - re-exported
