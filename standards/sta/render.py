"""Rows -> SensorThings JSON: properties, ``@iot.id``, ``@iot.selfLink``, navigation links.

In: an :class:`~standards.sta.model.Entity`, a row dict from :mod:`standards.sta.engine`,
the service root URL (``.../sta/v1.1``) and ``$select``.  Out: the entity's JSON object;
:func:`data_array` gives the ``dataArray`` result format of Observations (section 14.3).
"""

from __future__ import annotations

from datetime import UTC, datetime

import shapely.wkt
from shapely.geometry import mapping

from standards.sta.model import Entity


def iso(t: datetime | None) -> str | None:
    """ISO 8601 in UTC with milliseconds and ``Z``."""
    if t is None:
        return None
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def key_text(ent: Entity, key) -> str:
    """The key as it appears in a URL: ``5`` or ``'segment:a'`` (quotes doubled)."""
    if ent.str_id:
        return "'" + str(key).replace("'", "''") + "'"
    return str(key)


def self_link(base: str, ent: Entity, key) -> str:
    """``base/Plural(key)``."""
    return f"{base}/{ent.plural}({key_text(ent, key)})"


def _point(row: dict) -> dict | None:
    if row.get("lon") is None:
        return None
    return {"type": "Point", "coordinates": [row["lon"], row["lat"]]}


def _feature(row: dict) -> dict | None:
    if row.get("wkt"):
        return mapping(shapely.wkt.loads(row["wkt"]))
    return _point(row)


def properties(ent: Entity, row: dict, extra: dict | None = None) -> dict:
    """The standard properties of ``row`` (``extra``: derived ones, e.g. phenomenonTime)."""
    p = ent.plural
    out: dict = {}
    for name in ent.props:
        if name in row and name not in ("time",):
            v = row[name]
            out[name] = iso(v) if isinstance(v, datetime) else v
    if p == "HistoricalLocations":
        out["time"] = iso(row["time"])
    elif p == "Locations":
        out["location"] = _point(row)
    elif p == "Datastreams":
        out["unitOfMeasurement"] = {"name": row["uom_name"], "symbol": row["uom_symbol"],
                                    "definition": row["uom_definition"]}
        out["observedArea"] = _point(row)
        span = (extra or {}).get(row["id"])
        out["phenomenonTime"] = (f"{iso(span[0])}/{iso(span[1])}"
                                 if span and span[0] is not None else None)
        out["properties"] = {"metric": row["metric"], "slot": row["slot"]}
    elif p == "FeaturesOfInterest":
        out["feature"] = _feature(row)
        out["properties"] = {"type": row["ftype"]}
    elif p == "Things":
        out["properties"] = row.get("properties") or {}
    return {k: out[k] for k in (*ent.props, "properties") if k in out}


def entity(ent: Entity, row: dict, base: str, select: list[str] | None = None,
           extra: dict | None = None) -> dict:
    """One entity's JSON object (``$select`` applied; navigation links unless deselected)."""
    link = self_link(base, ent, row["id"])
    out: dict = {}
    want = None if select is None else set(select)
    if want is None or want & {"id", "@iot.id"}:
        out["@iot.id"] = row["id"]
    if want is None or "@iot.selfLink" in want or "selfLink" in want:
        out["@iot.selfLink"] = link
    for k, v in properties(ent, row, extra).items():
        if want is None or k in want:
            out[k] = v
    for nav in ent.nav:
        if want is None or nav in want:
            out[f"{nav}@iot.navigationLink"] = f"{link}/{nav}"
    return out


def data_array(rows: list[dict], base: str, select: list[str] | None) -> list[dict]:
    """Observations grouped per datastream in the ``dataArray`` format."""
    comps = select or ["id", "phenomenonTime", "result"]
    allowed = {"id", "phenomenonTime", "resultTime", "result"}
    comps = [c for c in comps if c in allowed] or ["id", "phenomenonTime", "result"]
    groups: dict[int, list] = {}
    for r in rows:
        vals = []
        for c in comps:
            v = r[c]
            vals.append(iso(v) if isinstance(v, datetime) else v)
        groups.setdefault(r["ds"], []).append(vals)
    out = []
    for ds, arr in groups.items():
        g = {"Datastream@iot.navigationLink": f"{base}/Datastreams({ds})",
             "components": comps, "dataArray@iot.count": len(arr), "dataArray": arr}
        out.append(g)
    return out
