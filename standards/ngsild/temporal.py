"""Temporal evolution of TrafficFlowObserved and CrowdFlowObserved from the twin's rollups.

In: a connection, the entity type, optional ids, attributes and a time range
(``timerel`` before / after / between with ``timeAt`` / ``endTimeAt``; for one entity
optional: the last 7 days), ``lastN``.  Out:
temporal entities, one per segment or zone that has data in the range, each attribute an
array of instances ``{"type": "Property", "value", "observedAt"}`` (or, with
``temporalValues``, ``{"type": "Property", "values": [[value, observedAt], ...]}``).
Instances are the twin's per-minute rollups (``twin_segment_1m``, ``twin_zone_1m``: read by
their (id, bucket) keys, never a scan of raw readings); ``observedAt`` is the end of the
minute.  A range is at most :data:`MAX_RANGE` long (``before``/``after`` reach that far).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import psycopg

from standards.ngsild import entities as E

MAX_RANGE = timedelta(days=7)
# attribute -> SQL expression over the rollup row (same meanings as the live entities)
SERIES = {
    E.TRAFFIC: ("twin_segment_1m", "segment_id", {
        "vehicleFlowPerHour": "flow_veh_h", "intensity": "flow_veh_h / 60.0",
        "averageVehicleSpeed": "greatest(speed_kmh, 0)",
        "occupancy": "least(1, greatest(0, occupancy_pct / 100.0))",
        "congestionIndex": "congestion", "sensorCount": "sensors"}),
    E.CROWD: ("twin_zone_1m", "zone_id", {
        "peopleCount": "round(greatest(people, 0))", "peopleCountTowards": "round(entries)",
        "peopleCountAway": "round(exits)", "densityPer1000m2": "density_per_1000m2",
        "vehicles": "vehicles", "trucks": "trucks"}),
}
INTEGER_ATTRS = frozenset({"peopleCount", "peopleCountTowards", "peopleCountAway", "trucks",
                           "sensorCount"})


class TemporalError(ValueError):
    """A bad temporal query; ``parameter`` names the culprit."""

    def __init__(self, parameter: str, problem: str) -> None:
        super().__init__(f"{parameter}: {problem}")
        self.parameter = parameter


def time_range(timerel: str | None, time_at: datetime | None, end_at: datetime | None,
               optional: bool = False) -> tuple[datetime, datetime]:
    """[start, end) of a temporal query; TemporalError when incomplete or too long.

    ``optional``: retrieving one entity, whose temporal query CIM 009 (5.7.3) makes optional;
    without timerel, timeAt and endTimeAt that is the last :data:`MAX_RANGE` up to now.
    """
    if optional and timerel is None and time_at is None and end_at is None:
        now = datetime.now(UTC)
        return now - MAX_RANGE, now
    if timerel is None:
        raise TemporalError("timerel", "give timerel=before|after|between and timeAt")
    if time_at is None:
        raise TemporalError("timeAt", f"timerel={timerel} needs timeAt")
    if timerel == "before":
        return time_at - MAX_RANGE, time_at
    if timerel == "after":
        return time_at, time_at + MAX_RANGE
    if timerel != "between":
        raise TemporalError("timerel", f"{timerel!r}: use before, after or between")
    if end_at is None:
        raise TemporalError("endTimeAt", "timerel=between needs endTimeAt")
    if end_at <= time_at:
        raise TemporalError("endTimeAt", "must be after timeAt")
    if end_at - time_at > MAX_RANGE:
        raise TemporalError("endTimeAt", f"a range is at most {MAX_RANGE.days} days")
    return time_at, end_at


def evolution(conn: psycopg.Connection, entity_type: str, start: datetime, end: datetime,
              ids: list[str] | None = None, attrs: list[str] | None = None,
              last_n: int | None = None, values_form: bool = False) -> list[dict]:
    """Temporal entities of ``entity_type`` (TrafficFlowObserved or CrowdFlowObserved)."""
    table, key, series = SERIES[entity_type]
    names = [a for a in (attrs or series) if a in series]
    if not names:
        return []
    local = None
    if ids is not None:
        local = [i for t, i in filter(None, map(E.local_id, ids)) if t == entity_type]
    cols = ", ".join(series[a] for a in names)
    # observation window: minutes whose end (bucket + 1 min) is in [start, end)
    sql = (f"SELECT {key}, bucket, {cols} FROM citypulse.{table} "  # noqa: S608
           "WHERE bucket >= %s AND bucket < %s" + (f" AND {key} = ANY(%s)" if local is not None
                                                   else "") + f" ORDER BY {key}, bucket")
    params: list = [start - timedelta(minutes=1), end - timedelta(minutes=1)]
    if local is not None:
        params.append(local)
    per: dict[str, list[tuple]] = defaultdict(list)
    for row in conn.execute(sql, params):
        per[row[0]].append(row[1:])
    out = []
    for ident, rows in per.items():
        if last_n:
            rows = rows[-last_n:]
        e: dict = {"id": E.urn(entity_type, ident), "type": entity_type}
        for j, name in enumerate(names):
            inst = [(_num(name, r[j + 1]), _utc(r[0] + timedelta(minutes=1)))
                    for r in rows if r[j + 1] is not None]
            if not inst:
                continue
            e[name] = ({"type": "Property", "values": [[v, t] for v, t in inst]} if values_form
                       else [{"type": "Property", "value": v, "observedAt": t} for v, t in inst])
        out.append(e)
    return out


def _num(name: str, v: object) -> object:
    return int(v) if name in INTEGER_ATTRS else float(v)


def _utc(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")
