"""Per-source mapping files: foreign field -> catalogue metric, unit conversion, scale.

In: a YAML file (``ingest/sources/mappings/<source>.yaml`` or the same name in
``settings.sources_mapping_dir``).  Out: a frozen :class:`Mapping` whose :meth:`Mapping.apply`
turns foreign ``field -> value`` pairs into catalogue ``metric -> value`` pairs plus the
fields it does not know (the caller dead-letters those as ``unknown_metric``; nothing is
guessed).  Loading validates every entry and raises :class:`MappingError` naming the file,
the line and the fix::

    fields:                       # foreign field (dotted path into nested objects)
      temperature: {metric: temperature_c}
      temperatureF: {metric: temperature_c, unit: degF}      # converted to the metric's unit
      level_cm: {metric: level_m, scale: 0.01}               # value * scale + offset
    passthrough: false            # true: catalogue metric names are accepted as themselves
    devices:                      # optional: foreign device id -> registry sensor_id
      "0101010101010101": w-17
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import yaml

from citypulse.actuators import DEVICE_KINDS

MAPPINGS_DIR = Path(__file__).parent / "mappings"

# every catalogue metric name -> its unit (a name shared by kinds has one unit everywhere);
# actuators' telemetry too (a pump behind a network server reports its sump level)
METRIC_UNITS: dict[str, str] = {m.name: m.unit for k in DEVICE_KINDS.values()
                                for m in k.metrics}

# (from unit, to unit) -> (scale, offset): value_to = value_from * scale + offset
CONVERSIONS: dict[tuple[str, str], tuple[float, float]] = {
    ("degF", "degC"): (5 / 9, -32 * 5 / 9),
    ("K", "degC"): (1.0, -273.15),
    ("m/s", "km/h"): (3.6, 0.0),
    ("mph", "km/h"): (1.609344, 0.0),
    ("knots", "km/h"): (1.852, 0.0),
    ("cm", "m"): (0.01, 0.0),
    ("mm", "m"): (0.001, 0.0),
    ("ft", "m"): (0.3048, 0.0),
    ("in/h", "mm/h"): (25.4, 0.0),
    ("t", "kg"): (1000.0, 0.0),
    ("lb", "kg"): (0.45359237, 0.0),
    ("ratio", "%"): (100.0, 0.0),
    ("mg/m3", "ug/m3"): (1000.0, 0.0),
    ("ppb", "ppm"): (0.001, 0.0),
}


class MappingError(ValueError):
    """A mapping file is wrong; the message names the file, the line and the fix."""


@dataclass(frozen=True, slots=True)
class FieldMap:
    """How one foreign field becomes one catalogue metric."""

    field: str
    metric: str
    scale: float = 1.0
    offset: float = 0.0

    def convert(self, value: float) -> float:
        """The foreign value in the metric's unit."""
        return value * self.scale + self.offset


@dataclass(frozen=True)
class Mapping:
    """A validated mapping file of one source."""

    source: str
    path: str
    fields: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    passthrough: bool = False
    devices: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))

    def apply(self, values) -> tuple[tuple[tuple[str, float], ...], tuple[tuple[str, float], ...]]:
        """Foreign ``(field, value)`` pairs -> (catalogue pairs, unmapped pairs)."""
        good: list[tuple[str, float]] = []
        bad: list[tuple[str, float]] = []
        fields = self.fields
        for name, v in values:
            fm = fields.get(name)
            if fm is not None:
                good.append((fm.metric, fm.convert(v)))
            elif self.passthrough and name in METRIC_UNITS:
                good.append((name, v))
            else:
                bad.append((name, v))
        return tuple(good), tuple(bad)


def _line(node: yaml.Node | None) -> int:
    return node.start_mark.line + 1 if node is not None else 1


def _number(src: str, node: yaml.Node, key: str, raw: object) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise MappingError(f"{src} line {_line(node)}: {key} must be a number, got {raw!r}")
    return float(raw)


def parse(text: str, source: str, src: str) -> Mapping:
    """Validate mapping YAML ``text`` of ``source`` (``src`` names the file in errors)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise MappingError(f"{src}{where}: not valid YAML: "
                           f"{getattr(exc, 'problem', None) or exc}") from None
    if root is None:
        return Mapping(source, src)
    if not isinstance(root, yaml.MappingNode):
        raise MappingError(f"{src} line {_line(root)}: expected keys fields:, passthrough:, "
                           "devices:")
    fields: dict[str, FieldMap] = {}
    devices: dict[str, str] = {}
    passthrough = False
    for knode, vnode in root.value:
        key = knode.value
        if key == "passthrough":
            if vnode.tag != "tag:yaml.org,2002:bool":
                raise MappingError(f"{src} line {_line(vnode)}: passthrough must be true or false")
            passthrough = vnode.value.lower() in ("true", "yes", "on")
        elif key == "fields":
            if not isinstance(vnode, yaml.MappingNode):
                raise MappingError(f"{src} line {_line(vnode)}: fields must map a foreign field "
                                   "to {metric: NAME[, unit: U][, scale: S][, offset: O]}")
            for fk, fv in vnode.value:
                fm = _field(src, fk, fv)
                if fm.field in fields:
                    raise MappingError(f"{src} line {_line(fk)}: field {fm.field!r} mapped twice")
                fields[fm.field] = fm
        elif key == "devices":
            if not isinstance(vnode, yaml.MappingNode):
                raise MappingError(f"{src} line {_line(vnode)}: devices must map a foreign "
                                   "device id to a registry sensor_id")
            for dk, dv in vnode.value:
                if not isinstance(dv, yaml.ScalarNode) or not str(dv.value).strip():
                    raise MappingError(f"{src} line {_line(dk)}: device {dk.value!r} needs a "
                                       "sensor_id")
                devices[str(dk.value)] = str(dv.value).strip()
        else:
            raise MappingError(f"{src} line {_line(knode)}: unknown key {key!r}; use fields:, "
                               "passthrough:, devices:")
    return Mapping(source, src, MappingProxyType(fields), passthrough,
                   MappingProxyType(devices))


def _field(src: str, knode: yaml.Node, vnode: yaml.Node) -> FieldMap:
    name = str(knode.value)
    line = _line(knode)
    if not isinstance(vnode, yaml.MappingNode):
        raise MappingError(f"{src} line {line}: field {name!r} needs {{metric: NAME}}")
    spec = {k.value: (k, v) for k, v in vnode.value}
    unknown = set(spec) - {"metric", "unit", "scale", "offset"}
    if unknown:
        k = spec[sorted(unknown)[0]][0]
        raise MappingError(f"{src} line {_line(k)}: unknown option {k.value!r} of field "
                           f"{name!r}; use metric, unit, scale, offset")
    if "metric" not in spec:
        raise MappingError(f"{src} line {line}: field {name!r} has no metric:")
    mnode = spec["metric"][1]
    metric = str(mnode.value)
    if metric not in METRIC_UNITS:
        raise MappingError(f"{src} line {_line(mnode)}: {metric!r} is not a catalogue metric; "
                           f"known: {', '.join(sorted(METRIC_UNITS))}")
    data = yaml.safe_load(yaml.serialize(vnode))
    scale = _number(src, spec["scale"][1], "scale", data["scale"]) if "scale" in spec else 1.0
    offset = _number(src, spec["offset"][1], "offset", data["offset"]) if "offset" in spec else 0.0
    if "unit" in spec:
        unit = str(data["unit"])
        to = METRIC_UNITS[metric]
        if unit != to:
            conv = CONVERSIONS.get((unit, to))
            if conv is None:
                known = sorted(f for f, t in CONVERSIONS if t == to)
                raise MappingError(f"{src} line {_line(spec['unit'][1])}: no conversion from "
                                   f"{unit!r} to {metric}'s unit {to!r}; known: "
                                   f"{', '.join(known) or 'none (give scale/offset)'}")
            # first the file's scale/offset (raw -> unit), then the unit conversion
            scale, offset = scale * conv[0], offset * conv[0] + conv[1]
    return FieldMap(name, metric, scale, offset)


def load(source: str, directory: Path | None = None) -> Mapping:
    """Load the mapping of ``source`` from ``directory`` (else the shipped default)."""
    for d in (directory, MAPPINGS_DIR):
        if d is None:
            continue
        path = Path(d) / f"{source}.yaml"
        if path.exists():
            return parse(path.read_text(), source, str(path))
    return Mapping(source, "(none)")
