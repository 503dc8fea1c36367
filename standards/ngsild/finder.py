"""Which entities a ``GET /entities`` query selects, in a stable order, one page at a time.

In: a connection, the parsed query (:class:`Query`).  Out: ``(page, total)``: the page of
keyValues entities (``offset``/``limit``) and how many matched in all.  Entities are ordered
by type (:data:`entities.TYPES` order) then id.  Segments, zones, open alerts and device
models are built from the live state and filtered here; devices (up to the whole registry)
are selected in SQL by id and by the geo-query's bounding box, and paged in SQL when no
other filter applies, so listing 200,000 devices never builds them all.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import psycopg

from standards.ngsild import entities as E
from standards.ngsild.query import Predicate


@dataclass
class Query:
    """A parsed entity query (every part optional)."""

    types: list[str] | None = None
    ids: list[str] | None = None
    id_pattern: re.Pattern | None = None
    q: Predicate | None = None
    geo: Predicate | None = None
    attrs: list[str] | None = None
    limit: int = 20
    offset: int = 0
    at: datetime | None = None
    congested_above: float = 0.6
    access: object = None  # a sharing recipient's sharing.access.Access (None: everything)

    def types_asked(self) -> list[str]:
        """The entity types to look at, in the served order."""
        wanted = set(self.types or E.TYPES)
        if self.ids and not self.types:
            wanted = {t for t, _ in filter(None, map(E.local_id, self.ids))}
        if self.access is not None:  # a recipient reads devices of its kinds only
            wanted &= set(RECIPIENT_TYPES)
        return [t for t in E.TYPES if t in wanted]


RECIPIENT_TYPES = (E.DEVICE, E.MODEL)


def _trim(e: dict, access) -> dict | None:
    """``e`` as a recipient may see it (None: not at all)."""
    if e["type"] == E.MODEL:
        kind = e["name"]
        if kind not in access.metrics:
            return None
        return {**e, "measuredMetrics": [m for m in e["measuredMetrics"]
                                         if m in access.metrics[kind]]}
    kind = E.local_id(e["refDeviceModel"])[1]
    hidden = {"gatewayId"}
    if kind not in access.position:
        hidden.add("location")
    if kind not in access.segment:
        hidden.add("refRoadSegment")
    if kind not in access.zone:
        hidden.add("refZone")
    return {k: v for k, v in e.items() if k not in hidden}


def _keep(query: Query) -> Callable[[dict], bool]:
    ids = set(query.ids or ())
    attrs = set(query.attrs or ())

    def keep(e: dict) -> bool:
        if ids and e["id"] not in ids:
            return False
        if query.id_pattern is not None and not query.id_pattern.search(e["id"]):
            return False
        if attrs and not attrs & e.keys():
            return False
        if query.q is not None and not query.q(e):
            return False
        return query.geo is None or query.geo(e)

    return keep


def _built(conn: psycopg.Connection, kind: str, query: Query) -> list[dict]:
    if kind == E.TRAFFIC:
        return E.traffic(conn, query.at, query.congested_above)
    if kind == E.CROWD:
        return E.crowd(conn, query.at)
    if kind == E.ALERT:
        return E.alerts(conn)
    if query.access is None:
        return E.device_models()
    return [t for t in (_trim(e, query.access) for e in E.device_models()) if t]


def _device_where(query: Query) -> tuple[str, tuple]:
    clauses, params = [], []
    if query.ids:
        sids = [i for t, i in filter(None, map(E.local_id, query.ids)) if t == E.DEVICE]
        clauses.append("s.sensor_id = ANY(%s)")
        params.append(sids)
    bbox = getattr(query.geo, "bbox", None)
    if bbox is not None:
        clauses.append("s.lon BETWEEN %s AND %s AND s.lat BETWEEN %s AND %s")
        params += [bbox[0], bbox[2], bbox[1], bbox[3]]
    if query.access is not None:
        clauses.append("s.kind = ANY(%s)")
        params.append(sorted(query.access.position) if query.geo is not None
                      else query.access.kinds)
    return " AND ".join(clauses), tuple(params)


def _devices(conn: psycopg.Connection, query: Query, alone: bool) -> tuple[list[dict], int]:
    where, params = _device_where(query)
    simple = query.q is None and query.geo is None and query.id_pattern is None \
        and not query.attrs
    if query.access is not None:
        def fetch(*a):
            return [_trim(e, query.access) for e in E.devices(conn, *a)]
    else:
        def fetch(*a):
            return E.devices(conn, *a)
    if alone and simple:
        total = conn.execute("SELECT count(*) FROM citypulse.sensors s"  # noqa: S608
                             + (f" WHERE {where}" if where else ""), params).fetchone()[0]
        page = fetch(where, params, query.limit, query.offset) if query.limit else []
        return page, total
    keep = _keep(query)
    found = [e for e in fetch(where, params) if keep(e)]
    return (found[query.offset:query.offset + query.limit] if alone else found), len(found)


def find(conn: psycopg.Connection, query: Query) -> tuple[list[dict], int]:
    """The page of matching keyValues entities and the total number of matches."""
    kinds = query.types_asked()
    keep = _keep(query)
    if kinds == [E.DEVICE]:
        return _devices(conn, query, alone=True)
    found: list[dict] = []
    for kind in kinds:
        if kind == E.DEVICE:
            found += _devices(conn, query, alone=False)[0]
        else:
            found += sorted((e for e in _built(conn, kind, query) if keep(e)),
                            key=lambda e: e["id"])
    return found[query.offset:query.offset + query.limit], len(found)


def one(conn: psycopg.Connection, entity_id: str, at: datetime | None = None,
        congested_above: float = 0.6, access=None) -> dict | None:
    """The entity ``entity_id`` as it is now (or at ``at``), or None."""
    parsed = E.local_id(entity_id)
    if parsed is None:
        return None
    page, _ = find(conn, Query(types=[parsed[0]], ids=[entity_id], limit=1, at=at,
                               congested_above=congested_above, access=access))
    return page[0] if page else None
