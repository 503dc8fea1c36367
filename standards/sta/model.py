"""The SensorThings 1.1 entity model over citypulse's store: every entity set as one SQL query.

In: :mod:`citypulse.catalogue` (kinds -> Sensors, metrics -> ObservedProperties and units),
the registry (``citypulse.sensors`` -> Things, registry Locations and HistoricalLocations),
trackers' readings (-> track Locations and HistoricalLocations, :mod:`.track`), the twin's
placement (segments and zones -> FeaturesOfInterest) and ``citypulse.raw`` (Observations, no
copy).  Out: :data:`ENTITIES`, plural name -> :class:`Entity` (its SQL, properties, links).

Identifiers (stable, documented in docs/standard-apis.md):
Thing = ``sensors.id``; Location = HistoricalLocation = ``sensors.id`` for the registry
position, ``(sensors.id << 42) | epoch milliseconds`` for a tracker's reported position
(:mod:`.track`; a Thing's Locations is its current one, the latest reported); Sensor =
position of the kind in the catalogue (1-based); ObservedProperty = position of the metric name in first-seen
catalogue order (1-based); Datastream = ``sensors.id * 8 + slot``; Observation =
``(datastream << 42) | epoch milliseconds``; FeatureOfInterest = ``'segment:<id>'``,
``'zone:<id>'`` or ``'point:<sensors.id>'`` (a device the twin placed on neither).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from citypulse.catalogue import KINDS, MAX_SLOTS
from standards.sta.track import HISTLOC_SQL, LOCATIONS_SQL, stamp_id

OM_MEASUREMENT = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement"
UCUM = "http://unitsofmeasure.org/ucum.html"
# catalogue unit -> (name, UCUM code); None where UCUM has no code (the symbol is ours)
UNITS = {
    "veh": ("vehicles", "{vehicles}"), "km/h": ("kilometre per hour", "km/h"),
    "%": ("percent", "%"), "persons": ("persons", "{persons}"), "deg": ("degree", "deg"),
    "kg": ("kilogram", "kg"), "ug/m3": ("microgram per cubic metre", "ug/m3"),
    "m": ("metre", "m"), "mm/h": ("millimetre per hour", "mm/h"),
    "%/m": ("percent per metre", "%/m"), "degC": ("degree Celsius", "Cel"),
    "bool": ("boolean state", "{state}"), "%LEL": ("percent of lower explosive limit", "%{LEL}"),
    "ppm": ("parts per million", "[ppm]"), "dB(A)": ("A-weighted decibel", None),
    "dBm": ("decibel-milliwatt", "dB[mW]"),
}


def _q(text: object) -> str:
    if text is None:
        return "NULL"
    if isinstance(text, int):
        return str(text)
    # every entity SQL runs with parameters: a literal % is written %%
    return "'" + str(text).replace("'", "''").replace("%", "%%") + "'"


def _metric_ids() -> dict[str, int]:
    out: dict[str, int] = {}
    for k in KINDS.values():
        for m in k.metrics:
            out.setdefault(m.name, len(out) + 1)
    return out


def datastream_id(sensor: int, slot: int) -> int:
    """The Datastream id of slot ``slot`` of ``sensors.id`` ``sensor``."""
    return sensor * 8 + slot


def observation_id(datastream: int, epoch_ms: int) -> int:
    """The Observation id of ``datastream``'s reading at ``epoch_ms``."""
    return (datastream << 42) | epoch_ms


SENSOR_IDS = {name: i for i, name in enumerate(KINDS, 1)}
METRIC_IDS = _metric_ids()
SLOTS = tuple(range(max(len(k.metrics) for k in KINDS.values())))
assert len(SLOTS) <= MAX_SLOTS


def unit_of(unit: str) -> dict:
    """The SensorThings ``unitOfMeasurement`` of a catalogue unit (UCUM where one exists)."""
    name, code = UNITS.get(unit, (unit, None))
    return {"name": name, "symbol": code or unit,
            "definition": f"{UCUM}#{code}" if code else f"urn:citypulse:unit:{unit}"}


def _values(rows: list[tuple], cols: str) -> str:
    body = ", ".join("(" + ", ".join(_q(v) for v in r) + ")" for r in rows)
    return f"(VALUES {body}) AS {cols}"


def _kinds_values() -> str:
    return _values([(i, k.name, k.description, k.placement, k.interval_s.__int__())
                    for k, i in ((KINDS[n], i) for n, i in SENSOR_IDS.items())],
                   "k(id, name, description, placement, interval_s)")


def _props_values() -> str:
    first: dict[str, tuple] = {}
    for k in KINDS.values():
        for m in k.metrics:
            first.setdefault(m.name, (METRIC_IDS[m.name], m.name,
                                      f"urn:citypulse:metric:{m.name}", m.description))
    return _values(list(first.values()), "o(id, name, definition, description)")


def _streams_values() -> str:
    rows = []
    for k in KINDS.values():
        for slot, m in enumerate(k.metrics):
            u = unit_of(m.unit)
            rows.append((k.name, slot, m.name, m.description, u["name"], u["symbol"],
                         u["definition"], SENSOR_IDS[k.name], METRIC_IDS[m.name]))
    return _values(rows, "c(kind, slot, metric, description, uom_name, uom_symbol, "
                         "uom_definition, sensor, op)")


@dataclass(frozen=True)
class Nav:
    """A navigation property: the target set, and ``target.child_col = parent[parent_col]``."""

    target: str
    many: bool
    child_col: str
    parent_col: str = "id"


@dataclass(frozen=True)
class Entity:
    """One entity set: its SQL (named columns), key type, properties and navigation."""

    singular: str
    plural: str
    sql: str
    props: tuple[str, ...]            # the standard properties, in output order
    nav: dict = field(default_factory=dict)
    str_id: bool = False
    geo: str | None = None            # the geometry property (point columns lon/lat)
    time_cols: tuple[str, ...] = ()


_FOI = ("CASE WHEN p.segment_id IS NOT NULL THEN 'segment:' || p.segment_id "
        "WHEN p.zone_id IS NOT NULL THEN 'zone:' || p.zone_id ELSE 'point:' || {s} END")

THINGS_SQL = f"""SELECT s.id AS id, s.sensor_id AS name,
  k.description || ' ' || s.sensor_id AS description,
  jsonb_strip_nulls(s.props || jsonb_build_object('kind', s.kind, 'gateway_id', s.gateway_id,
    'placement', p.placement, 'status', p.status, 'segment_id', p.segment_id,
    'zone_id', p.zone_id)) AS properties, s.lon, s.lat
FROM citypulse.sensors s LEFT JOIN citypulse.sensor_placement p ON p.sensor = s.id
LEFT JOIN {_kinds_values()} ON k.name = s.kind"""  # noqa: S608 - identifiers from code; values are parameters

SENSORS_SQL = f"""SELECT k.id::bigint AS id, k.name, k.description,
  'text/plain' AS "encodingType",
  'citypulse catalogue kind ' || k.name || ': ' || k.description || '; placed on '
    || k.placement || '; reports every ' || k.interval_s || ' s' AS metadata
FROM {_kinds_values()}"""  # noqa: S608 - identifiers from code; values are parameters

PROPS_SQL = f"SELECT o.id::bigint AS id, o.name, o.definition, o.description FROM {_props_values()}"  # noqa: S608 - identifiers from code; values are parameters

DATASTREAMS_SQL = f"""SELECT s.id::bigint * 8 + c.slot AS id, s.sensor_id || ' ' || c.metric AS name,
  c.description, c.uom_name, c.uom_symbol, c.uom_definition,
  '{OM_MEASUREMENT}' AS "observationType", s.lon, s.lat, s.id AS thing,
  c.sensor::bigint AS sensor, c.op::bigint AS op, c.slot, s.id AS sensor_row, c.metric
FROM citypulse.sensors s JOIN {_streams_values()} ON c.kind = s.kind"""  # noqa: S608 - identifiers from code; values are parameters

FOI_SQL = """SELECT 'segment:' || g.segment_id AS id, g.segment_id AS name,
  g.road || ' ' || g.direction || ' (' || g.road_class || ')' AS description,
  'application/geo+json' AS "encodingType", g.geom_wkt AS wkt, 'segment' AS ftype,
  NULL::float8 AS lon, NULL::float8 AS lat, NULL::integer AS sensor_row
FROM citypulse.twin_segments g
UNION ALL SELECT 'zone:' || z.zone_id, z.name, z.zone_type || ' zone ' || z.name,
  'application/geo+json', z.geom_wkt, 'zone', NULL, NULL, NULL FROM citypulse.twin_zones z
UNION ALL SELECT 'point:' || s.id, s.sensor_id, 'position of ' || s.sensor_id,
  'application/geo+json', NULL, 'point', s.lon, s.lat, s.id
FROM citypulse.sensors s LEFT JOIN citypulse.sensor_placement p ON p.sensor = s.id
WHERE p.segment_id IS NULL AND p.zone_id IS NULL"""


def observations_sql(branches: list[tuple[int, str]]) -> str:
    """Observations as one UNION ALL branch per ``(slot, extra condition on raw r)``."""
    foi = _FOI.format(s="r.sensor")
    return "\nUNION ALL\n".join(
        f"""SELECT {stamp_id(f'r.sensor::bigint * 8 + {k}', 'r.time')} AS id,
  r.time AS "phenomenonTime", r.time AS "resultTime", r.v{k} AS result,
  r.sensor::bigint * 8 + {k} AS ds, r.sensor AS sensor_row,
  COALESCE((SELECT {foi} FROM citypulse.sensor_placement p WHERE p.sensor = r.sensor),
           'point:' || r.sensor) AS foi
FROM citypulse.raw r WHERE r.v{k} IS NOT NULL{' AND ' + extra if extra else ''}"""  # noqa: S608 - identifiers from code; values are parameters
        for k, extra in branches)


ENTITIES: dict[str, Entity] = {e.plural: e for e in (
    Entity("Thing", "Things", THINGS_SQL, ("name", "description", "properties"), {
        "Locations": Nav("Locations", True, "current_of"),
        "HistoricalLocations": Nav("HistoricalLocations", True, "thing"),
        "Datastreams": Nav("Datastreams", True, "thing")}),
    Entity("Location", "Locations", LOCATIONS_SQL,
           ("name", "description", "encodingType", "location"), {
               "Things": Nav("Things", True, "id", "thing"),
               "HistoricalLocations": Nav("HistoricalLocations", True, "id")},
           geo="location"),
    Entity("HistoricalLocation", "HistoricalLocations", HISTLOC_SQL, ("time",), {
        "Thing": Nav("Things", False, "id", "thing"),
        "Locations": Nav("Locations", True, "id")}, time_cols=("time",)),
    Entity("Sensor", "Sensors", SENSORS_SQL,
           ("name", "description", "encodingType", "metadata"), {
               "Datastreams": Nav("Datastreams", True, "sensor")}),
    Entity("ObservedProperty", "ObservedProperties", PROPS_SQL,
           ("name", "definition", "description"), {
               "Datastreams": Nav("Datastreams", True, "op")}),
    Entity("Datastream", "Datastreams", DATASTREAMS_SQL,
           ("name", "description", "unitOfMeasurement", "observationType", "observedArea",
            "phenomenonTime"), {
               "Thing": Nav("Things", False, "id", "thing"),
               "Sensor": Nav("Sensors", False, "id", "sensor"),
               "ObservedProperty": Nav("ObservedProperties", False, "id", "op"),
               "Observations": Nav("Observations", True, "ds")},
           geo="observedArea"),
    Entity("Observation", "Observations", "", (
        "phenomenonTime", "resultTime", "result"), {
        "Datastream": Nav("Datastreams", False, "id", "ds"),
        "FeatureOfInterest": Nav("FeaturesOfInterest", False, "id", "foi")},
        time_cols=("phenomenonTime", "resultTime")),
    Entity("FeatureOfInterest", "FeaturesOfInterest", FOI_SQL,
           ("name", "description", "encodingType", "feature"), {
               "Observations": Nav("Observations", True, "foi")},
           str_id=True, geo="feature"),
)}

# property -> column, where they differ (composite properties map to their parts)
COLUMNS = {"unitOfMeasurement/name": "uom_name", "unitOfMeasurement/symbol": "uom_symbol",
           "unitOfMeasurement/definition": "uom_definition"}
