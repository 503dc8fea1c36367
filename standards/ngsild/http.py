"""The NGSI-LD API (read only) at ``/ngsi-ld/v1/``, as a Flask blueprint the web app mounts.

In: the settings, the web app's connection pool and ``require_read`` (the web app's check
that the caller has a session, HTTP Basic credentials or an API key with ``api:read``; it
aborts with 401/403 otherwise).  Out, all GET::

    /ngsi-ld/v1/entities?type=&id=&idPattern=&attrs=&q=&georel=&geometry=&coordinates=
                        &geoproperty=&limit=&offset=&count=&options=keyValues
    /ngsi-ld/v1/entities/{id}?attrs=&options=
    POST /ngsi-ld/v1/entityOperations/query?limit=&offset=&count=&options=
         body {"type": "Query", "entities": [{"type", "id", "idPattern"}], "attrs": [...],
               "q": "...", "geoQ": {"georel", "geometry", "coordinates", "geoproperty"}}
    /ngsi-ld/v1/types
    /ngsi-ld/v1/temporal/entities?type=&id=&attrs=&timerel=&timeAt=&endTimeAt=&lastN=
                                 &options=temporalValues&limit=&offset=
    /ngsi-ld/v1/temporal/entities/{id}?...
    /ngsi-ld/v1/contexts/{name}                  the shipped @context documents

``Accept: application/json`` (default; the @context in a ``Link`` header),
``application/ld+json`` (``@context`` in the body) or ``application/geo+json``; anything
else 406.  Errors are NGSI-LD ProblemDetails (``type``
``https://uri.etsi.org/ngsi-ld/errors/BadRequestData`` 400, ``ResourceNotFound`` 404,
``OperationNotSupported`` 405, ``NotAcceptable`` 406).  Writes are not offered (405); the
POST query (ETSI GS CIM 009 6.23) is a read and answers like ``GET /entities``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import flask
import orjson

from citypulse.settings import Settings
from standards.ngsild import entities as E
from standards.ngsild import finder, temporal, views
from standards.ngsild.query import QueryError, parse_geo, parse_q

PREFIX = "/ngsi-ld/v1"
ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"
MAX_LIMIT = 1000
DEFAULT_LIMIT = 20
JSON, LD, GEO = "application/json", "application/ld+json", "application/geo+json"
WRITES = ["POST", "PUT", "PATCH", "DELETE"]


class Problem(Exception):
    """An NGSI-LD error answer: status, ProblemDetails type name, detail."""

    def __init__(self, status: int, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.kind, self.detail = status, kind, detail


def problem_response(p: Problem) -> flask.Response:
    """The ProblemDetails JSON answer for ``p``."""
    body = {"type": ERRORS + p.kind, "title": p.kind, "status": p.status, "detail": p.detail}
    return flask.Response(orjson.dumps(body), status=p.status, mimetype=JSON)


def _bad(detail: str) -> Problem:
    return Problem(400, "BadRequestData", detail)


Args = Mapping[str, str]
QUERY_KEYS = ("type", "entities", "attrs", "q", "geoQ", "@context")  # of a Query body
GEO_KEYS = ("georel", "geometry", "coordinates", "geoproperty")


def _list(name: str, args: Args | None = None) -> list[str] | None:
    text = (flask.request.args if args is None else args).get(name)
    if text is None:
        return None
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise _bad(f"{name}: empty list")
    return items


def _int(name: str, default: int, top: int | None = None, args: Args | None = None) -> int:
    text = (flask.request.args if args is None else args).get(name)
    if text is None:
        return default
    if not text.isdigit() or (top is not None and int(text) > top):
        raise _bad(f"{name}: {text!r} is not an integer in 0..{top if top else 'n'}")
    return int(text)


def _options() -> set[str]:
    opts = set(filter(None, (flask.request.args.get("options") or "").split(",")))
    if flask.request.args.get("format"):
        opts.add(flask.request.args["format"])
    unknown = opts - {"keyValues", "simplified", "normalized", "concise", "temporalValues",
                      "sysAttrs", "count"}
    if unknown:
        raise _bad(f"options: unknown {sorted(unknown)}")
    return opts


def _accept() -> str:
    header = flask.request.headers.get("Accept", "")
    if not header.strip():
        return JSON
    best = flask.request.accept_mimetypes.best_match([JSON, LD, GEO])
    if best is None:
        raise Problem(406, "NotAcceptable", f"Accept {header!r}: use {JSON}, {LD} or {GEO}")
    return best


def _context_url() -> str:
    return flask.request.host_url.rstrip("/") + PREFIX + "/contexts/" + views.CITYPULSE_CONTEXT


def _geo(a: Args) -> Any:
    georel = a.get("georel")
    if georel is None:
        if a.get("geometry") or a.get("coordinates"):
            raise _bad("georel: geometry and coordinates need a georel")
        return None
    if not a.get("geometry") or not a.get("coordinates"):
        raise _bad("georel needs geometry and coordinates")
    return parse_geo(georel, a.get("geometry"), a.get("coordinates"),
                     a.get("geoproperty", "location"))


def _query(settings_threshold: float, body: Args | None = None) -> tuple[finder.Query, bool]:
    """The query of the URL's parameters, or of ``body`` (a POST Query, see _body_args)."""
    a = flask.request.args if body is None else body
    if body is None and "geoQ" in a:
        raise _bad("geoQ is not a parameter of GET /entities (ETSI GS CIM 009 6.4.3.2): use "
                   "georel, geometry and coordinates, or POST /entityOperations/query")
    id_pattern = None
    if a.get("idPattern"):
        try:
            id_pattern = re.compile(a["idPattern"])
        except re.error as exc:
            raise _bad(f"idPattern: {exc}") from None
    query = finder.Query(
        types=_list("type", a), ids=_list("id", a), id_pattern=id_pattern,
        q=parse_q(a["q"]) if "q" in a else None, geo=_geo(a), attrs=_list("attrs", a),
        limit=_int("limit", DEFAULT_LIMIT, MAX_LIMIT, a), offset=_int("offset", 0, args=a),
        congested_above=settings_threshold)
    count = a.get("count", "false")
    if count not in ("true", "false"):
        raise _bad(f"count: {count!r}: use true or false")
    if not (query.types or query.ids or id_pattern or "q" in a or query.geo or query.attrs):
        raise _bad("give at least one of type, id, idPattern, attrs, q or georel")
    if query.limit == 0 and count != "true":
        raise _bad("limit=0 is only allowed with count=true")
    return query, count == "true"


def _body_args() -> dict[str, str]:
    """A POST Query body (CIM 009 5.2.23) as the GET parameters it stands for.

    The URL's limit, offset and count are kept.  Several entity selectors may each give only a
    type (one selector may also give id and idPattern).
    """
    body = flask.request.get_json(force=True, silent=True)
    if not isinstance(body, dict) or body.get("type") != "Query":
        raise _bad('body: give a JSON object {"type": "Query", "entities": [...], ...}')
    if unknown := sorted(set(body) - set(QUERY_KEYS)):
        raise _bad(f"body: {unknown} not supported (use entities, attrs, q, geoQ)")
    args = {k: v for k, v in flask.request.args.items() if k in ("limit", "offset", "count")}
    selectors = body.get("entities", [])
    if not isinstance(selectors, list) or not all(
            isinstance(x, dict) and set(x) <= {"type", "id", "idPattern"} and
            all(isinstance(v, str) for v in x.values()) for x in selectors):
        raise _bad("entities: a list of {type, id, idPattern} with string values")
    if len(selectors) > 1 and any(set(x) != {"type"} for x in selectors):
        raise _bad("entities: several selectors may each give only a type")
    if selectors:
        args.update({k: v for k, v in selectors[0].items() if k != "type"})
        args["type"] = ",".join(x["type"] for x in selectors if "type" in x)
    attrs = body.get("attrs")
    if attrs is not None:
        if not isinstance(attrs, list) or not all(isinstance(x, str) for x in attrs):
            raise _bad("attrs: a list of attribute names")
        args["attrs"] = ",".join(attrs)
    if "q" in body:
        if not isinstance(body["q"], str):
            raise _bad("q: a string")
        args["q"] = body["q"]
    geo = body.get("geoQ")
    if geo is not None:
        if not isinstance(geo, dict) or not set(geo) <= set(GEO_KEYS):
            raise _bad(f"geoQ: an object of {', '.join(GEO_KEYS)}")
        args.update({k: v if isinstance(v, str) else orjson.dumps(v).decode()
                     for k, v in geo.items()})
    return {k: v for k, v in args.items() if v != ""}


def _render(items: list[dict], many: bool, opts: set[str], accept: str,
            attrs: list[str] | None, temporal_form: bool = False) -> flask.Response:
    key_values = bool(opts & {"keyValues", "simplified"})
    shaped = []
    for e in items:
        e = views.project(e, attrs)
        if accept == GEO:
            shaped.append(views.feature(e, key_values))
            continue
        body = e if key_values or temporal_form else views.normalized(e)
        if accept == LD:
            body = {**body, "@context": _context_url()}
        shaped.append(body)
    if accept == GEO:
        doc: Any = {"type": "FeatureCollection", "features": shaped} if many else shaped[0]
    else:
        doc = shaped if many else shaped[0]
    resp = flask.Response(orjson.dumps(doc), mimetype=accept)
    if accept != LD:
        resp.headers["Link"] = (f'<{_context_url()}>; rel="http://www.w3.org/ns/json-ld#context"'
                                f'; type="{LD}"')
    return resp


def create_blueprint(settings: Settings, pool: Any, require_read: Callable[[], object],
                     access: Callable[[], object] | None = None) -> flask.Blueprint:
    """The NGSI-LD blueprint over ``pool``; ``require_read`` guards every view.

    ``access()`` (after it) gives a sharing recipient's :class:`sharing.access.Access`
    (it then sees only Devices and DeviceModels of its kinds), or None for everything.
    """
    bp = flask.Blueprint("ngsild", __name__, url_prefix=PREFIX)
    threshold = E.congestion_threshold(settings)

    @bp.before_request
    def guard() -> None:
        require_read()

    @bp.errorhandler(Problem)
    def on_problem(p: Problem):
        return problem_response(p)

    @bp.errorhandler(QueryError)
    def on_query_error(exc: QueryError):
        return problem_response(_bad(str(exc)))

    @bp.errorhandler(temporal.TemporalError)
    def on_temporal_error(exc: temporal.TemporalError):
        return problem_response(_bad(str(exc)))

    @bp.get("/entities")
    def entities():
        return query_answer(None)

    @bp.post("/entityOperations/query")
    def entities_by_post():
        return query_answer(_body_args())

    def query_answer(body: Args | None):
        accept, opts = _accept(), _options()
        query, count = _query(threshold, body)
        query.access = access() if access else None
        with pool.connection() as conn:
            page, total = finder.find(conn, query)
        resp = _render(page, True, opts, accept, query.attrs)
        if count:
            resp.headers["NGSILD-Results-Count"] = str(total)
        return resp

    @bp.get("/entities/<path:entity_id>")
    def entity(entity_id: str):
        accept, opts = _accept(), _options()
        if ":" not in entity_id:
            raise _bad(f"{entity_id!r} is not a URI")
        with pool.connection() as conn:
            found = finder.one(conn, entity_id, congested_above=threshold,
                               access=access() if access else None)
        if found is None:
            raise Problem(404, "ResourceNotFound", f"no entity {entity_id}")
        return _render([found], False, opts, accept, _list("attrs"))

    @bp.get("/types")
    def types():
        accept = _accept()
        shown = finder.RECIPIENT_TYPES if access and access() is not None else E.TYPES
        doc = {"id": "urn:ngsi-ld:EntityTypeList:citypulse", "type": "EntityTypeList",
               "typeList": list(shown)}
        if accept == LD:
            doc["@context"] = _context_url()
        return flask.Response(orjson.dumps(doc), mimetype=LD if accept == LD else JSON)

    def temporal_answer(ids: list[str] | None, single: bool):
        accept, opts = _accept(), _options()
        if accept == GEO:
            raise Problem(406, "NotAcceptable", "temporal entities are JSON or JSON-LD")
        a = flask.request.args
        start, end = temporal.time_range(a.get("timerel"), _time("timeAt"),
                                         _time("endTimeAt"), optional=single)
        kinds = _list("type") or sorted({t for t, _ in filter(None, map(E.local_id, ids or []))})
        if not kinds:
            raise _bad("give type (TrafficFlowObserved, CrowdFlowObserved) or id")
        last_n = _int("lastN", 0) or None
        limit, offset = _int("limit", DEFAULT_LIMIT, MAX_LIMIT), _int("offset", 0)
        out: list[dict] = []
        with pool.connection() as conn:
            for kind in kinds:
                if kind in temporal.SERIES and not (access and access() is not None):
                    out += temporal.evolution(conn, kind, start, end, ids, _list("attrs"),
                                              last_n, "temporalValues" in opts)
        if single:
            if not out:
                raise Problem(404, "ResourceNotFound", f"no temporal data for {ids[0]} in "
                                                       "that range")
            return _render(out[:1], False, {"keyValues"}, accept, None, temporal_form=True)
        return _render(out[offset:offset + limit], True, {"keyValues"}, accept, None,
                       temporal_form=True)

    @bp.get("/temporal/entities")
    def temporal_entities():
        return temporal_answer(_list("id"), False)

    @bp.get("/temporal/entities/<path:entity_id>")
    def temporal_entity(entity_id: str):
        return temporal_answer([entity_id], True)

    @bp.get("/contexts/<name>")
    def context(name: str):
        if name == views.CITYPULSE_CONTEXT:
            base = flask.request.host_url.rstrip("/") + PREFIX + "/contexts"
            return flask.Response(orjson.dumps(views.citypulse_context(base)), mimetype=LD)
        body = views.context_file(name)
        if body is None:
            raise Problem(404, "ResourceNotFound", f"no @context {name}")
        return flask.Response(body, mimetype=LD)

    @bp.route("/entities", methods=WRITES)
    @bp.route("/entities/<path:_rest>", methods=WRITES)
    @bp.route("/temporal/entities", methods=WRITES)
    @bp.route("/temporal/entities/<path:_rest>", methods=WRITES)
    def writes(_rest: str = ""):
        raise Problem(405, "OperationNotSupported", "this NGSI-LD API is read only")

    @bp.route("/", methods=["GET", *WRITES], defaults={"_rest": ""})
    @bp.route("/<path:_rest>", methods=["GET", *WRITES])
    def unknown(_rest: str):
        raise Problem(404, "ResourceNotFound", f"no such NGSI-LD endpoint: {PREFIX}/{_rest}")

    return bp


def _time(name: str):
    from twin.api import parse_time

    text = flask.request.args.get(name)
    try:
        return parse_time(text)
    except (ValueError, OverflowError, OSError):
        raise _bad(f"{name}: {text!r} is not an ISO-8601 date-time") from None
