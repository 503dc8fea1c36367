"""The HTTP side of SensorThings 1.1 (read): resource paths, paging links and errors.

In: the request path under ``/sta/v1.1/`` and its query options.  Out: JSON as the
standard's section 9 prescribes: the service root (entity sets and conformance), a
collection ``{"@iot.count"?, "value": [...], "@iot.nextLink"?}``, one entity, one property
(``/name``) or its raw value (``/name/$value``).  Bad query options are 400 with the
parser's message; unknown entity sets, keys or properties are 404.  Errors are
``{"code", "type": "error", "message"}`` (as FROST-Server answers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from standards.sta import render
from standards.sta.engine import ALL, OBS, Reader, link_cond
from standards.sta.model import ENTITIES, Entity
from standards.sta.odata import QueryError
from standards.sta.query import Expand, Options, parse_options

CONFORMANCE = [
    "http://www.opengis.net/spec/iot_sensing/1.1/req/datamodel",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/resource-path/resource-path-to-entities",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/request-data",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/data-array/data-array",
]
_SEG = re.compile(r"^([A-Za-z]+)(?:\((\d{1,19}|'(?:[^']|'')*')\))?$")


class NotFound(LookupError):
    """A path that names nothing (404)."""


@dataclass
class Answer:
    """What a request resolved to: a JSON body, or raw text for ``$value``."""

    body: object
    text: str | None = None


def root(base: str) -> dict:
    """The service root document."""
    return {"value": [{"name": e.plural, "url": f"{base}/{e.plural}"}
                      for e in ENTITIES.values()],
            "serverSettings": {"conformance": CONFORMANCE}}


def _segments(path: str) -> list[tuple[str, object]]:
    out = []
    for raw in [p for p in path.split("/") if p]:
        m = _SEG.match(raw)
        if raw.startswith("$"):
            out.append((raw, None))
            continue
        if not m:
            raise NotFound(f"bad path segment {raw!r}")
        key = m.group(2)
        if key is not None:
            key = int(key) if key[0] != "'" else key[1:-1].replace("''", "'")
        out.append((m.group(1), key))
    return out


def _link_cond(target: Entity, nav, parent_row: dict) -> tuple[str, list]:
    sql = link_cond(target, nav, "e", "%s")
    return sql, [parent_row[nav.parent_col]] * sql.count("%s")


def resolve(reader: Reader, path: str, args, base: str, url: str) -> Answer:
    """Answer a GET of ``path`` (below the service root) with query ``args``."""
    segs = _segments(path)
    opts = parse_options(args)
    if not segs:
        return Answer(root(base))
    name, key = segs[0]
    ent = ENTITIES.get(name)
    if ent is None:
        raise NotFound(f"no entity set {name!r}")
    row = None
    cond, restrict = None, ALL
    if key is not None:
        row = reader.one(ent, key)
        if row is None:
            raise NotFound(f"no {ent.singular} {render.key_text(ent, key)}")
    for i, (name, key) in enumerate(segs[1:], 1):
        last = i == len(segs) - 1
        if row is None:
            raise NotFound(f"{name!r} cannot follow a collection")
        if name in ent.nav:
            nav = ent.nav[name]
            target = ENTITIES[nav.target]
            if target is OBS:
                restrict, cond = reader.restrict_for(ent, row), None
            else:
                cond = _link_cond(target, nav, row)
            ent = target
            if nav.many and key is None:
                row = None
                continue
            if not nav.many and key is not None:
                raise NotFound(f"{name} is a single entity, it takes no key")
            row = reader.one(ent, key, cond) if key is not None else _single(reader, ent, cond)
            if row is None:
                raise NotFound(f"no {name} here")
            cond, restrict = None, ALL
            continue
        props = render.properties(ent, row, reader.phenomenon_times([row])
                                  if ent.plural == "Datastreams" else None)
        if name in ("id", "@iot.id") or name in props:
            value = row["id"] if name in ("id", "@iot.id") else props[name]
            rest = segs[i + 1:]
            if rest == [("$value", None)]:
                return Answer(None, "" if value is None else str(value))
            if rest:
                raise NotFound("only $value may follow a property")
            return Answer({name if name != "id" else "@iot.id": value})
        if name == "$ref" and last:
            return Answer({"@iot.selfLink": render.self_link(base, ent, row["id"])})
        raise NotFound(f"{ent.singular} has no property or navigation {name!r}")
    if row is not None:
        return Answer(one_json(reader, ent, row, opts, base))
    return Answer(collection_json(reader, ent, opts, base, url, cond, restrict))


def _single(reader: Reader, ent: Entity, cond) -> dict | None:
    rows, _more, _n = reader.collection(ent, Options(top=1), cond)
    return rows[0] if rows else None


def _check_select(ent: Entity, select: list[str] | None) -> None:
    known = {"id", "@iot.id", "@iot.selfLink", "selfLink", "properties", *ent.props,
             *ent.nav}
    bad = [s for s in select or () if s not in known]
    if bad:
        raise QueryError(f"$select: {ent.singular} has no property {bad[0]!r}")


def _rendered(reader: Reader, ent: Entity, rows: list[dict], opts: Options,
              base: str) -> list[dict]:
    _check_select(ent, opts.select)
    extra = None
    if ent.plural == "Datastreams" and (opts.select is None or "phenomenonTime" in opts.select):
        extra = reader.phenomenon_times(rows)
    out = [render.entity(ent, r, base, opts.select, extra) for r in rows]
    for item in opts.expand:
        expand(reader, ent, rows, out, item, base)
    return out


def expand(reader: Reader, ent: Entity, rows: list[dict], out: list[dict], item: Expand,
           base: str) -> None:
    """Put ``item``'s related entities into each rendered parent of ``out``."""
    if item.nav not in ent.nav:
        raise QueryError(f"$expand: {ent.singular} has no navigation property {item.nav!r}")
    nav = ent.nav[item.nav]
    target = ENTITIES[nav.target]
    opts = item.options
    kids = reader.children(ent, item.nav, rows, opts)
    more_q = urlencode(dict(opts.raw, **{"$top": str(opts.limit),
                                         "$skip": str(opts.skip + opts.limit)}), quote_via=quote)
    for row, js in zip(rows, out, strict=True):
        k = row["id"] if target is OBS else row[nav.parent_col]
        got, more, n = kids.get(k, ([], False, None))
        rendered = _rendered(reader, target, got, opts, base)
        if not nav.many:
            js[item.nav] = rendered[0] if rendered else None
            continue
        js[item.nav] = rendered
        if n is not None:
            js[f"{item.nav}@iot.count"] = n
        if more:
            link = render.self_link(base, ent, row["id"])
            js[f"{item.nav}@iot.nextLink"] = f"{link}/{item.nav}?{more_q}"


def one_json(reader: Reader, ent: Entity, row: dict, opts: Options, base: str) -> dict:
    """One entity with ``$select`` and ``$expand``."""
    return _rendered(reader, ent, [row], opts, base)[0]


def collection_json(reader: Reader, ent: Entity, opts: Options, base: str, url: str,
                    cond=None, restrict=ALL) -> dict:
    """A page of a collection, with ``@iot.count`` and ``@iot.nextLink`` as asked."""
    if opts.result_format and ent is not OBS:
        raise QueryError("$resultFormat=dataArray applies to Observations only")
    if opts.result_format and opts.expand:
        raise QueryError("$expand cannot be combined with $resultFormat=dataArray")
    rows, more, count = reader.collection(ent, opts, cond, restrict)
    body: dict = {}
    if count is not None:
        body["@iot.count"] = count
    if opts.result_format:
        body["value"] = render.data_array(rows, base, opts.select)
    else:
        body["value"] = _rendered(reader, ent, rows, opts, base)
    if more:
        q = dict(opts.raw, **{"$top": str(opts.limit), "$skip": str(opts.skip + opts.limit)})
        body["@iot.nextLink"] = f"{url}?" + urlencode(q, quote_via=quote)
    return body
