"""SensorThings entity sets cut down to what a sharing recipient may see.

In: an entity and a :class:`sharing.access.Access` (kinds, metrics, position, zone,
segment).  Out: :func:`entity_sql` (the entity's SQL wrapped so hidden rows are absent and
hidden properties are null) and :func:`obs_condition` (the extra condition on ``raw r`` of
one Observations slot branch).  Names come from the catalogue and are quoted as literals.
"""

from __future__ import annotations

from standards.sta.model import SENSOR_IDS, Entity


def _arr(values) -> str:
    body = ", ".join("'" + str(v).replace("'", "''") + "'" for v in values)
    return f"ARRAY[{body}]::text[]"


def _sensors(kinds) -> str:
    return f"(SELECT s2.id FROM citypulse.sensors s2 WHERE s2.kind = ANY({_arr(kinds)}))"  # noqa: S608 - names from the catalogue, quoted


def entity_sql(ent: Entity, access) -> str:
    """``ent``'s SQL showing only what ``access`` allows."""
    kinds, pos = access.kinds, sorted(access.position)
    inner = ent.sql
    if ent.plural == "Things":
        k = "x.properties->>'kind'"
        return f"""SELECT x.id, x.name, x.description, jsonb_strip_nulls(jsonb_build_object(
  'kind', x.properties->'kind',
  'zone_id', CASE WHEN {k} = ANY({_arr(access.zone)}) THEN x.properties->'zone_id' END,
  'segment_id', CASE WHEN {k} = ANY({_arr(access.segment)})
                THEN x.properties->'segment_id' END)) AS properties,
  CASE WHEN {k} = ANY({_arr(pos)}) THEN x.lon END AS lon,
  CASE WHEN {k} = ANY({_arr(pos)}) THEN x.lat END AS lat
FROM ({inner}) x WHERE {k} = ANY({_arr(kinds)})"""  # noqa: S608 - names from the catalogue, quoted
    if ent.plural in ("Locations", "HistoricalLocations"):
        # a tracker's track is its position too: shown exactly where the position is
        return f"SELECT x.* FROM ({inner}) x WHERE x.thing IN {_sensors(pos)}"  # noqa: S608 - as above
    if ent.plural == "Sensors":
        return f"SELECT x.* FROM ({inner}) x WHERE x.name = ANY({_arr(kinds)})"  # noqa: S608 - as above
    if ent.plural == "ObservedProperties":
        names = sorted({m for k in kinds for m in access.metrics[k]})
        return f"SELECT x.* FROM ({inner}) x WHERE x.name = ANY({_arr(names)})"  # noqa: S608 - as above
    if ent.plural == "Datastreams":
        pairs = [f"({SENSOR_IDS[k]}, '{m}')" for k in kinds for m in sorted(access.metrics[k])]
        allowed = f"(x.sensor, x.metric) IN (VALUES {', '.join(pairs)})" if pairs else "false"
        ids = ", ".join(str(SENSOR_IDS[k]) for k in pos) or "0"
        return f"""SELECT x.id, x.name, x.description, x.uom_name, x.uom_symbol,
  x.uom_definition, x."observationType",
  CASE WHEN x.sensor IN ({ids}) THEN x.lon END AS lon,
  CASE WHEN x.sensor IN ({ids}) THEN x.lat END AS lat,
  x.thing, x.sensor, x.op, x.slot, x.sensor_row, x.metric
FROM ({inner}) x WHERE {allowed}"""  # noqa: S608 - as above
    if ent.plural == "FeaturesOfInterest":
        zone = "true" if access.zone else "false"
        seg = "true" if access.segment else "false"
        return (f"SELECT x.* FROM ({inner}) x WHERE (x.ftype = 'point' AND x.sensor_row IN "  # noqa: S608 - as above
                f"{_sensors(pos)}) OR (x.ftype = 'zone' AND {zone}) "
                f"OR (x.ftype = 'segment' AND {seg})")
    return inner


def obs_condition(slot: int, access) -> str:
    """The condition on ``raw r`` keeping only visible observations of ``slot``."""
    kinds = access.slot_kinds(slot)
    return f"r.sensor IN {_sensors(kinds)}" if kinds else "false"
