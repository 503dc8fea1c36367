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
``track`` (false for the registry row), ``lon``/``lat``, ``part``/``skind`` (the branch and
the sensor's kind, see :func:`_union`), and on Locations ``current_of`` (the Thing whose
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


def _has_track(kind_sql: str, id_sql: str) -> str:
    # the latest reading with a position, one backward index probe (an EXISTS may be
    # planned as a bitmap of the whole track)
    terms = [f"({kind_sql} = '{k}' AND (SELECT r.time FROM citypulse.raw r "  # noqa: S608 - kind from the catalogue
             f"WHERE r.sensor = {id_sql} AND {_has_pos(k)} ORDER BY r.time DESC LIMIT 1) "
             "IS NOT NULL)" for k in TRACKERS]
    return "(" + " OR ".join(terms) + ")" if terms else "false"


def _at(time_sql: str) -> str:
    return f"""to_char({time_sql} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"""


def _registry_locations(part: str) -> str:
    cur = "s.id" if part == "reg_cur" else "NULL::integer"
    return f"""SELECT s.id::bigint AS id, s.sensor_id AS name,
  'position of ' || s.sensor_id AS description, {GEOJSON} AS "encodingType",
  s.lon, s.lat, s.id AS thing, s.registered_at AS time, false AS track, {cur} AS current_of,
  '{part}'::text AS part, s.kind AS skind FROM citypulse.sensors s"""  # noqa: S608 - identifiers from code


def _latest_points(kind: str) -> str:
    """Each tracker's latest point, one probe per tracker.

    A join, so PostgreSQL plans it on its own: its ORDER BY lets the branches merge.
    """
    lo, la = TRACKERS[kind]
    return f"""(SELECT {stamp_id('s.id::bigint', 't.time')} AS id,
  s.sensor_id || ' at ' || {_at('t.time')} AS name,
  'reported position of ' || s.sensor_id AS description, {GEOJSON} AS "encodingType",
  t.lon, t.lat, s.id AS thing, t.time, true AS track, s.id AS current_of,
  'cur'::text AS part, s.kind AS skind
FROM citypulse.sensors s CROSS JOIN LATERAL (
  SELECT r.time, r.v{lo} AS lon, r.v{la} AS lat FROM citypulse.raw r
  WHERE r.sensor = s.id AND {_has_pos(kind)} ORDER BY r.time DESC LIMIT 1) t
WHERE s.kind = '{kind}' ORDER BY s.id, t.time)"""  # noqa: S608 - identifiers from code


def _points(kind: str, head: str = "", tail: str = "") -> str:
    """Every reading of ``kind``'s trackers (the wrapper keeps those with a position).

    ``head``/``tail``: columns before ``lon`` and after ``track``.
    """
    lo, la = TRACKERS[kind]
    return f"""SELECT {stamp_id('r.sensor::bigint', 'r.time')} AS id, {head}
  r.v{lo} AS lon, r.v{la} AS lat, r.sensor AS thing, r.time, true AS track, {tail}
  '{kind}'::text AS part, '{kind}'::text AS skind FROM citypulse.raw r"""  # noqa: S608 - identifiers from code


def _on_track(kind: str) -> str:
    """On ``u``, a row of ``kind``'s readings: a tracker's reading with a position."""
    return (f"u.thing = ANY({_trackers(kind)}) AND u.lon IS NOT NULL AND u.lat IS NOT NULL")


def _union(branches: list[str], keep: dict[str, str]) -> str:
    """``branches`` with no WHERE of their own and ``keep`` (part -> condition) on top.

    A UNION ALL branch with a WHERE clause is planned on its own, for every row and in no
    order; without one PostgreSQL merges the branches into the outer query, so an
    ``ORDER BY thing, time ... LIMIT`` reads raw's (sensor, time) index in order and stops.
    Each ``part`` is a constant per branch: the conditions fold to the branch's own.
    """
    cond = " OR ".join(f"(u.part = '{p}' AND {c})" for p, c in keep.items())
    return f"SELECT u.* FROM ({chr(10)}{(chr(10) + 'UNION ALL' + chr(10)).join(branches)}) u WHERE {cond}"  # noqa: S608 - identifiers from code


def entity_sql(plural: str) -> str:
    """The SQL of Locations or HistoricalLocations."""
    if plural == "Locations":
        name = "(SELECT k.sensor_id FROM citypulse.sensors k WHERE k.id = r.sensor)"
        cols = (f"{name} || ' at ' || {_at('r.time')} AS name, 'reported position of ' || "
                f"{name} AS description, {GEOJSON} AS \"encodingType\",")
        branches = [_registry_locations("reg_cur"), _registry_locations("reg_past")]
        keep = {"reg_cur": f"NOT {_has_track('u.skind', 'u.thing')}",
                "reg_past": _has_track("u.skind", "u.thing")}
        for k in TRACKERS:
            branches += [_latest_points(k), _points(k, cols, "NULL::integer AS current_of,")]
            keep["cur"] = "true"
            keep[k] = (f"{_on_track(k)} AND u.time < (SELECT max(r2.time) FROM citypulse.raw "  # noqa: S608 - identifiers from code
                       f"r2 WHERE r2.sensor = u.thing AND {_has_pos(k, 'r2')})")
        return _union(branches, keep)
    branches = ["""SELECT s.id::bigint AS id, s.lon, s.lat, s.id AS thing, s.registered_at AS time,
  false AS track, 'reg'::text AS part, s.kind AS skind FROM citypulse.sensors s"""]
    keep = {"reg": "true"}
    for k in TRACKERS:
        branches.append(_points(k))
        keep[k] = _on_track(k)
    return _union(branches, keep)


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
