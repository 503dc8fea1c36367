"""Locations and HistoricalLocations: the registry position of every Thing, trackers' tracks.

In: the registry (``citypulse.sensors``: lon/lat, ``registered_at``) and, for tracker kinds
(catalogue kinds whose metrics include ``lon`` and ``lat``, as sharing.datasets decides),
every reading in ``citypulse.raw`` that has both.  Out: :data:`LOCATIONS_SQL`,
:data:`HISTLOC_SQL` (entity SQL for :mod:`standards.sta.model`), :func:`key_cond` (a key
lookup the planner turns into index conditions) and :func:`stamp_id`.

Identifiers: a registry position is Location = HistoricalLocation ``sensors.id``
(below 2**42, time = registration); a track point is Location = HistoricalLocation
``(sensors.id << 42) | epoch milliseconds`` of the reading (always 2**42 or more, so the
two never collide).  A Thing's current Location (``Things(id)/Locations``) is its latest
track point, or its registry position when it has none.

Columns besides the standard properties: ``thing``, ``time`` (registration or reading),
``track`` (false for the registry row), and on Locations ``current_of`` (the Thing whose
current Location this is, else NULL).  Every branch is written so a condition on
``thing``/``time`` becomes an index range on ``raw (sensor, time)``: the track of one Thing,
its latest point and one point by key are index probes, never a scan of raw.
"""

from __future__ import annotations

from citypulse.catalogue import KINDS

TRACK_BIT = 42
TRACK_BASE = 1 << TRACK_BIT        # track point ids are >= this, registry ids below
MS_MASK = TRACK_BASE - 1
# tracker kind -> (lon slot, lat slot) in raw
TRACKERS = {k.name: (names.index("lon"), names.index("lat"))
            for k in KINDS.values()
            for names in [[m.name for m in k.metrics]] if {"lon", "lat"} <= set(names)}
GEOJSON = "'application/geo+json'"
TRACKED = ("Locations", "HistoricalLocations")


def stamp_id(head_sql: str, time_sql: str) -> str:
    """SQL of ``(head << 42) | epoch ms of time`` (Observation and track point ids)."""
    return (f"(({head_sql}) << {TRACK_BIT}) "
            f"| floor(extract(epoch FROM {time_sql}) * 1000)::bigint")


def _has_pos(kind: str, r: str = "r") -> str:
    lo, la = TRACKERS[kind]
    return f"{r}.v{lo} IS NOT NULL AND {r}.v{la} IS NOT NULL"


def _trackers(kind: str) -> str:
    """The tracker sensors of ``kind`` as an array (one index read, run once)."""
    return (f"ARRAY(SELECT k.id FROM citypulse.sensors k WHERE k.kind = '{kind}')")  # noqa: S608 - kind from the catalogue


def _has_track(s: str = "s") -> str:
    terms = [f"({s}.kind = '{k}' AND EXISTS (SELECT 1 FROM citypulse.raw r "  # noqa: S608 - kind from the catalogue
             f"WHERE r.sensor = {s}.id AND {_has_pos(k)}))" for k in TRACKERS]
    return "(" + " OR ".join(terms) + ")" if terms else "false"


def _at(time_sql: str) -> str:
    return f"""to_char({time_sql} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"""


def _registry_locations(current: bool, d: str) -> str:
    cur = "s.id" if current else "NULL::integer"
    return f"""SELECT * FROM (SELECT s.id::bigint AS id, s.sensor_id AS name,
  'position of ' || s.sensor_id AS description, {GEOJSON} AS "encodingType",
  s.lon, s.lat, s.id AS thing, s.registered_at AS time, false AS track, {cur} AS current_of
FROM citypulse.sensors s WHERE {'NOT ' if current else ''}{_has_track()}
ORDER BY s.id{d}, s.registered_at{d}) reg"""  # noqa: S608 - identifiers from code


def _latest_points(kind: str, d: str) -> str:
    lo, la = TRACKERS[kind]
    return f"""SELECT * FROM (SELECT {stamp_id('s.id::bigint', 't.time')} AS id,
  s.sensor_id || ' at ' || {_at('t.time')} AS name,
  'reported position of ' || s.sensor_id AS description, {GEOJSON} AS "encodingType",
  t.lon, t.lat, s.id AS thing, t.time, true AS track, s.id AS current_of
FROM citypulse.sensors s CROSS JOIN LATERAL (
  SELECT r.time, r.v{lo} AS lon, r.v{la} AS lat FROM citypulse.raw r
  WHERE r.sensor = s.id AND {_has_pos(kind)} ORDER BY r.time DESC LIMIT 1) t
WHERE s.kind = '{kind}' ORDER BY s.id{d}) cur"""  # noqa: S608 - identifiers from code


def _earlier_points(kind: str, d: str) -> str:
    lo, la = TRACKERS[kind]
    name = "(SELECT k.sensor_id FROM citypulse.sensors k WHERE k.id = r.sensor)"
    return f"""SELECT {stamp_id('r.sensor::bigint', 'r.time')} AS id,
  {name} || ' at ' || {_at('r.time')} AS name,
  'reported position of ' || {name} AS description, {GEOJSON} AS "encodingType",
  r.lon, r.lat, r.sensor AS thing, r.time, true AS track, NULL::integer AS current_of
FROM (SELECT r.sensor, r.time, r.v{lo} AS lon, r.v{la} AS lat FROM citypulse.raw r
  WHERE r.sensor = ANY({_trackers(kind)}) AND {_has_pos(kind)}
    AND r.time < (SELECT max(r2.time) FROM citypulse.raw r2 WHERE r2.sensor = r.sensor
                  AND {_has_pos(kind, 'r2')})
  ORDER BY r.sensor{d}, r.time{d}) r"""  # noqa: S608 - identifiers from code


def _track_histlocs(kind: str, d: str) -> str:
    return f"""SELECT {stamp_id('r.sensor::bigint', 'r.time')} AS id, r.time,
  r.sensor AS thing, true AS track
FROM (SELECT r.sensor, r.time FROM citypulse.raw r
  WHERE r.sensor = ANY({_trackers(kind)}) AND {_has_pos(kind)}
  ORDER BY r.sensor{d}, r.time{d}) r"""  # noqa: S608 - identifiers from code


def entity_sql(plural: str, desc: bool = False) -> str:
    """The SQL of Locations or HistoricalLocations, each branch ordered by (Thing, time).

    ``desc`` orders the branches newest first: then a Thing's latest points
    (``$orderby=time desc``) are a backward index scan, with no sort of its track.
    """
    d = " DESC" if desc else ""
    if plural == "Locations":
        return "\nUNION ALL\n".join(
            [_registry_locations(True, d), _registry_locations(False, d)]
            + [b for k in TRACKERS for b in (_latest_points(k, d), _earlier_points(k, d))])
    return "\nUNION ALL\n".join(
        [f"""SELECT * FROM (SELECT s.id::bigint AS id, s.registered_at AS time, s.id AS thing,
  false AS track FROM citypulse.sensors s ORDER BY s.id{d}, s.registered_at{d}) reg"""]  # noqa: S608 - identifiers from code
        + [_track_histlocs(k, d) for k in TRACKERS])


def descending(orderby) -> bool:
    """Whether ``$orderby`` asks for the newest first (its first item is ``time desc``)."""
    return bool(orderby) and orderby[0][1] and orderby[0][0].op == "prop" \
        and orderby[0][0].value == ("time",)


LOCATIONS_SQL = entity_sql("Locations")
HISTLOC_SQL = entity_sql("HistoricalLocations")

# the default order of both sets: by Thing, then time (registration or reading) -- the
# order of raw's (sensor, time) index, so a page of the whole set is a merge of index scans
DEFAULT_ORDER = ["e.thing ASC", "e.time ASC"]


def key_cond(a: str, v: str) -> str:
    """SQL: row ``a`` of Locations/HistoricalLocations has the key ``v`` (an SQL value).

    Decodes the key into the Thing and, for a track point, a 2 ms time window, so every
    branch reads one index entry; ``track`` rules out the branches of the other kind.
    """
    k = f"({v})::bigint"
    point = f"to_timestamp(({k} & {MS_MASK}) / 1000.0)"
    return (f"{a}.id = {k} AND {a}.track = ({k} >= {TRACK_BASE}) AND {a}.thing = "
            f"(CASE WHEN {k} < {TRACK_BASE} THEN {k} ELSE {k} >> {TRACK_BIT} END) AND "
            f"{a}.time >= (CASE WHEN {k} < {TRACK_BASE} THEN '-infinity'::timestamptz "
            f"ELSE {point} - interval '1 ms' END) AND "
            f"{a}.time < (CASE WHEN {k} < {TRACK_BASE} THEN 'infinity'::timestamptz "
            f"ELSE {point} + interval '1 ms' END)")
