"""Compile ``$filter``/``$orderby`` trees (:mod:`standards.sta.odata`) to parameterised SQL.

In: a :class:`~standards.sta.odata.Node`, the :class:`~standards.sta.model.Entity` it is
evaluated on and the SQL alias of that entity's row.  Out: :meth:`Compiler.where` /
:meth:`Compiler.order` give SQL text with ``%s`` placeholders, the values in
:attr:`Compiler.params`.  Unknown properties, functions or unsupported shapes raise
:class:`~standards.sta.odata.QueryError` (the API answers 400).  Literals are always
parameters; the only inlined numbers are a geography literal's coordinates (floats).
Related entities: a to-one path (``Thing/name``) is a scalar sub-query; a condition through
a to-many navigation (``Datastreams/name eq 'x'``) is an ``EXISTS`` sub-query, true when
any related entity satisfies it (FROST's meaning).  :func:`key_cond` is the key lookup
both use (and the engine).

Geometry without PostGIS: points are ``lon``/``lat`` columns; ``st_within``/``geo.intersects``
of a point and a (multi)polygon is an even-odd ray cast over the polygon's edges behind a
bounding-box test; ``geo.distance`` to a point is planar, in degrees (as the standard's
geometry functions on EPSG:4326); features that are lines or areas (segments, zones) are
tested in Python with shapely through ``feature_ids``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import shapely
import shapely.wkt

from standards.sta import track
from standards.sta.model import COLUMNS, ENTITIES, Entity
from standards.sta.odata import ARITHMETIC, COMPARISONS, Node, QueryError

STR, NUM, TIME, BOOL, GEO, NULL, JSON, DUR = (
    "str", "num", "time", "bool", "geo", "null", "json", "dur")
TYPES = {"name": STR, "description": STR, "encodingType": STR, "metadata": STR,
         "definition": STR, "observationType": STR, "time": TIME, "phenomenonTime": TIME,
         "resultTime": TIME, "result": NUM}
_SQL_OP = {"eq": "=", "ne": "<>", "gt": ">", "ge": ">=", "lt": "<", "le": "<=",
           "add": "+", "sub": "-", "mul": "*", "div": "/"}
_STR_FN = {"tolower": "lower({})", "toupper": "upper({})", "trim": "btrim({})",
           "length": "length({})", "round": "round(({})::numeric)::float8",
           "floor": "floor({})", "ceiling": "ceil({})"}
_PARTS = {"year": "year", "month": "month", "day": "day", "hour": "hour", "minute": "minute",
          "second": "second"}
MAX_EDGES = 5000


def key_cond(ent: Entity, alias: str, value_sql: str) -> str:
    """SQL: ``alias``'s row has the key ``value_sql``, written so the planner uses an index."""
    a, v = alias, value_sql
    if ent.plural in track.TRACKED:
        return track.key_cond(a, v)
    if ent.plural == "Datastreams":
        return f"{a}.sensor_row = ({v}) / 8 AND {a}.slot = mod({v}, 8)"
    if ent.plural == "FeaturesOfInterest":
        return (f"{a}.id = {v} AND ({a}.ftype <> 'point' OR {a}.sensor_row = (CASE WHEN "
                f"left({v}, 6) = 'point:' AND substr({v}, 7) ~ '^[0-9]{{1,9}}$' "
                f"THEN substr({v}, 7)::int END))")
    return f"{a}.id = {v}"


def link_cond(target: Entity, nav, alias: str, local: str) -> str:
    """SQL: ``alias`` (a ``target`` row) is reached from ``local`` through ``nav``."""
    if nav.child_col == "id":
        return key_cond(target, alias, local)
    return f"{alias}.{nav.child_col} = {local}"


def _props(n: Node):
    if n.op == "prop":
        yield n
    for a in n.args:
        yield from _props(a)


def _strip(n: Node) -> Node:
    """``n`` with the first step of every property path removed."""
    if n.op == "prop":
        return replace(n, value=n.value[1:])
    return replace(n, args=tuple(_strip(a) for a in n.args))


class Compiler:
    """Compiles expressions on one entity's row (``alias``); collects parameters."""

    def __init__(self, entity: Entity, alias: str = "e",
                 feature_ids: Callable[[str, object], list[str]] | None = None,
                 params: list | None = None, depth: int = 0,
                 sql_of: Callable[[Entity], str] | None = None) -> None:
        self.entity, self.alias = entity, alias
        self.sql_of = sql_of or (lambda e: e.sql)
        self.feature_ids = feature_ids
        self.params = [] if params is None else params
        self.depth = depth

    def _p(self, value, cast: str = "") -> str:
        self.params.append(value)
        return "%s" + (f"::{cast}" if cast else "")

    def where(self, node: Node) -> str:
        """SQL for a boolean ``$filter`` expression."""
        sql, _ = self.expr(node)
        return sql

    def order(self, items: list[tuple[Node, bool]]) -> list[str]:
        """SQL ``ORDER BY`` terms for ``$orderby`` items."""
        out = []
        for node, desc in items:
            sql, kind = self.expr(node)
            if kind == GEO:
                raise QueryError("cannot order by a geometry")
            # PostgreSQL's default null placement (last ascending, first descending) is
            # the order of a b-tree index read either way: ORDER BY time DESC LIMIT 1
            # stays one backward index probe
            out.append(f"{sql} {'DESC' if desc else 'ASC'}")
        return out

    # ---- expressions -------------------------------------------------------------------
    def expr(self, n: Node) -> tuple[str, str]:
        """SQL and type of any expression."""
        if n.op == "lit":
            return self.literal(n)
        if n.op == "prop":
            return self.prop(n.value)
        if n.op in ("and", "or"):
            a, b = (self.expr(x)[0] for x in n.args)
            return f"({a} {n.op.upper()} {b})", BOOL
        if n.op == "not":
            return f"(NOT {self.expr(n.args[0])[0]})", BOOL
        if n.op == "neg":
            sql, kind = self.expr(n.args[0])
            return f"(- {sql})", kind
        if n.op in COMPARISONS or n.op == "call":
            many = self.any_of(n)
            if many is not None:
                return many, BOOL
        if n.op in COMPARISONS:
            return self.compare(n), BOOL
        if n.op in ARITHMETIC:
            (a, ka), (b, kb) = (self.expr(x) for x in n.args)
            if n.op == "mod":
                return f"mod(({a})::numeric, ({b})::numeric)::float8", NUM
            kind = TIME if TIME in (ka, kb) and n.op in ("add", "sub") and DUR in (ka, kb) \
                else (DUR if ka == kb == TIME else NUM)
            return f"({a} {_SQL_OP[n.op]} {b})", kind
        if n.op == "call":
            return self.call(n)
        raise QueryError(f"unsupported expression {n.op!r}")

    def literal(self, n: Node) -> tuple[str, str]:
        """A literal as a typed parameter."""
        if n.kind == "null":
            return "NULL", NULL
        if n.kind == "number":
            return self._p(n.value, "bigint" if isinstance(n.value, int) else "float8"), NUM
        if n.kind == "string":
            return self._p(n.value, "text"), STR
        if n.kind == "bool":
            return self._p(n.value, "boolean"), BOOL
        if n.kind == "datetime":
            t = n.value if n.value.tzinfo else n.value.replace(tzinfo=UTC)
            return self._p(t, "timestamptz"), TIME
        if n.kind == "duration":
            return self._p(n.value, "interval"), DUR
        if n.kind == "geometry":
            raise QueryError("a geography literal is only allowed inside a geo function")
        raise QueryError(f"unsupported literal {n.kind}")

    def prop(self, path: tuple[str, ...]) -> tuple[str, str]:
        """A property path on this entity (navigation to-one included)."""
        e, a = self.entity, self.alias
        head = path[0]
        if head in ("id", "@iot.id"):
            if len(path) > 1:
                raise QueryError(f"{'/'.join(path)}: id has no properties")
            return f"{a}.id", STR if e.str_id else NUM
        if head in e.nav:
            return self.nav_prop(e.nav[head], path)
        if head == e.geo:
            return f"{a}.lon", GEO
        joined = "/".join(path)
        if joined in COLUMNS:
            return f"{a}.{COLUMNS[joined]}", STR
        if head == "properties" and e.plural == "Things":
            if len(path) < 2:
                return f"{a}.properties", JSON
            return f"({a}.properties #> {self._p(list(path[1:]), 'text[]')})", JSON
        if head in e.props or head in e.time_cols:
            if len(path) > 1:
                raise QueryError(f"{joined}: {head} has no sub-properties here")
            if e.plural == "Datastreams" and head in ("phenomenonTime", "resultTime"):
                raise QueryError(f"Datastream {head} is derived from the observations and "
                                 "cannot be filtered or ordered on; filter Observations")
            return f'{a}."{head}"', TYPES.get(head, STR)
        raise QueryError(f"{e.singular} has no property {joined!r}")

    def nav_prop(self, nav, path: tuple[str, ...]) -> tuple[str, str]:
        """A property reached through a to-one navigation: a scalar subquery."""
        if nav.many:
            raise QueryError(f"{'/'.join(path)}: {path[0]!r} is a to-many navigation; it can "
                             "only be compared (any of them), not ordered by or computed on")
        rest = path[1:]
        if not rest:
            raise QueryError(f"{path[0]} is an entity, name one of its properties")
        if rest[0] in ("id", "@iot.id") and len(rest) == 1:
            return f"{self.alias}.{nav.parent_col}", STR if ENTITIES[nav.target].str_id else NUM
        target, b = self._step(nav)
        inner = Compiler(target, b, self.feature_ids, self.params, self.depth + 1, self.sql_of)
        sql, kind = inner.prop(rest)
        if kind == GEO:
            raise QueryError("geometries of related entities cannot be used in $filter")
        cond = link_cond(target, nav, b, f"{self.alias}.{nav.parent_col}")
        return f"(SELECT {sql} FROM ({self.sql_of(target)}) {b} WHERE {cond} LIMIT 1)", kind  # noqa: S608 - identifiers from code; values are parameters

    def _step(self, nav) -> tuple[Entity, str]:
        if self.depth > 4:
            raise QueryError("navigation paths are limited to 5 steps")
        return ENTITIES[nav.target], f"n{self.depth + 1}"

    def any_of(self, n: Node) -> str | None:
        """``n`` through a to-many navigation (``Datastreams/name eq 'x'``) as ``EXISTS``.

        True when it holds for any of the related entities (as FROST does); None when
        ``n`` goes through no to-many navigation.
        """
        heads = {p.value[0] for p in _props(n)}
        many = sorted(h for h in heads if h in self.entity.nav and self.entity.nav[h].many)
        if not many:
            return None
        if len(heads) > 1:
            raise QueryError(f"a condition through the to-many navigation {many[0]!r} can only "
                             f"use properties reached through it, not {sorted(heads)}")
        if any(len(p.value) < 2 for p in _props(n)):
            raise QueryError(f"{many[0]} is an entity, name one of its properties")
        nav = self.entity.nav[many[0]]
        target, b = self._step(nav)
        if not target.sql:  # Observations: read per datastream, see the engine
            raise QueryError(f"filtering through {many[0]!r} is not supported; query "
                             f"{many[0]} instead")
        inner = Compiler(target, b, self.feature_ids, self.params, self.depth + 1, self.sql_of)
        cond = inner.expr(_strip(n))[0]
        link = link_cond(target, nav, b, f"{self.alias}.{nav.parent_col}")
        return f"EXISTS (SELECT 1 FROM ({self.sql_of(target)}) {b} WHERE {link} AND {cond})"  # noqa: S608 - identifiers from code; values are parameters

    def compare(self, n: Node) -> str:
        """A comparison (``eq null`` is ``IS NULL``)."""
        (a, ka), (b, kb) = (self.expr(x) for x in n.args)
        if GEO in (ka, kb):
            raise QueryError("compare geometries with st_equals, not eq")
        op = _SQL_OP[n.op]
        if NULL in (ka, kb) and n.op in ("eq", "ne"):
            other = b if ka == NULL else a
            return f"({other} IS {'NOT ' if n.op == 'ne' else ''}NULL)"
        a, b = _json_as(a, ka, kb, self), _json_as(b, kb, ka, self)
        return f"({a} {op} {b})"

    def call(self, n: Node) -> tuple[str, str]:
        """A function call."""
        name, args = n.value, n.args
        if name in ("geo.distance", "st_within", "st_intersects", "geo.intersects",
                    "st_disjoint", "st_equals", "st_contains"):
            return self.geo_call(name, args)
        if name == "now":
            _arity(name, args, 0)
            return "now()", TIME
        if name in ("mindatetime", "maxdatetime"):
            _arity(name, args, 0)
            when = datetime(1, 1, 1, tzinfo=UTC) if name == "mindatetime" else datetime(
                9999, 12, 31, 23, 59, 59, tzinfo=UTC)
            return self._p(when, "timestamptz"), TIME
        sub = [self.expr(x) for x in args]
        # a JSON property is used as its text (a string's value, a number's digits)
        s = [f"({x} #>> '{{}}')" if k == JSON else x for x, k in sub]
        if name in _STR_FN:
            _arity(name, args, 1)
            kind = NUM if name in ("length", "round", "floor", "ceiling") else STR
            return _STR_FN[name].format(s[0]), kind
        if name in _PARTS:
            _arity(name, args, 1)
            return f"extract({_PARTS[name]} FROM ({s[0]}) AT TIME ZONE 'UTC')::int", NUM
        if name == "fractionalseconds":
            _arity(name, args, 1)
            return f"mod(extract(microseconds FROM {s[0]})::bigint, 1000000) / 1e6", NUM
        if name == "date":
            _arity(name, args, 1)
            return f"(({s[0]}) AT TIME ZONE 'UTC')::date::timestamp AT TIME ZONE 'UTC'", TIME
        if name == "time":
            _arity(name, args, 1)
            return f"to_char(({s[0]}) AT TIME ZONE 'UTC', 'HH24:MI:SS')", STR
        if name == "totaloffsetminutes":
            _arity(name, args, 1)
            return "0", NUM
        if name in ("substringof", "contains", "startswith", "endswith", "indexof", "concat"):
            _arity(name, args, 2)
            a, b = (f"({x})::text" for x in s)
            hay, needle = (b, a) if name == "substringof" else (a, b)
            return {"substringof": f"(strpos({hay}, {needle}) > 0)",
                    "contains": f"(strpos({hay}, {needle}) > 0)",
                    "startswith": f"starts_with({a}, {b})",
                    "endswith": f"starts_with(reverse({a}), reverse({b}))",
                    "indexof": f"(strpos({a}, {b}) - 1)",
                    "concat": f"({a} || {b})"}[name], (
                        NUM if name == "indexof" else STR if name == "concat" else BOOL)
        if name == "substring":
            if len(args) not in (2, 3):
                raise QueryError("substring takes 2 or 3 arguments")
            tail = f", ({s[2]})::int" if len(s) == 3 else ""
            return f"substr(({s[0]})::text, ({s[1]})::int + 1{tail})", STR
        raise QueryError(f"unknown function {name!r}")

    def geo_call(self, name: str, args: tuple[Node, ...]) -> tuple[str, str]:
        """A geometry function on the entity's geometry and a literal."""
        _arity(name, args, 2)
        prop = next((a for a in args if a.op == "prop"), None)
        lit = next((a for a in args if a.op == "lit" and a.kind == "geometry"), None)
        if prop is None or lit is None:
            raise QueryError(f"{name}: give the entity's geometry property and a "
                             "geography'...' literal")
        sql, kind = self.prop(prop.value)
        if kind != GEO:
            raise QueryError(f"{name}: {'/'.join(prop.value)} is not a geometry")
        try:
            geom = shapely.wkt.loads(lit.value)
        except (shapely.errors.ShapelyError, ValueError) as exc:
            raise QueryError(f"bad WKT in geography'{lit.value}': {exc}") from None
        a = self.alias
        point = _point_sql(name, geom, a)
        if self.entity.plural != "FeaturesOfInterest":
            return point, (NUM if name == "geo.distance" else BOOL)
        if name == "geo.distance":
            raise QueryError("geo.distance on features is not supported; use st_within")
        ids = self.feature_ids(name, geom) if self.feature_ids else []
        return (f"(CASE WHEN {a}.ftype = 'point' THEN {point} "
                f"ELSE {a}.id = ANY({self._p(ids, 'text[]')}) END)"), BOOL


def _arity(name: str, args, n: int) -> None:
    if len(args) != n:
        raise QueryError(f"{name} takes {n} argument{'s' * (n != 1)}, got {len(args)}")


def _json_as(sql: str, kind: str, other: str, c: Compiler) -> str:
    """A JSON property compares as jsonb with the other side made jsonb (each used once)."""
    if kind == JSON or other != JSON:
        return sql
    return f"to_jsonb({sql})"


def _f(x: float) -> str:
    return repr(float(x))


def _point_sql(name: str, geom, a: str) -> str:
    lon, lat = f"{a}.lon", f"{a}.lat"
    if name == "geo.distance":
        if geom.geom_type != "Point":
            raise QueryError("geo.distance: only to a POINT")
        return f"sqrt(power({lon} - {_f(geom.x)}, 2) + power({lat} - {_f(geom.y)}, 2))"
    if name == "st_contains":
        if geom.geom_type != "Point":
            return "false"  # a point contains nothing bigger than itself
        name = "st_equals"
    if geom.geom_type == "Point" or name == "st_equals":
        if geom.geom_type != "Point":
            return "false"
        inside = f"({lon} = {_f(geom.x)} AND {lat} = {_f(geom.y)})"
    elif geom.geom_type in ("Polygon", "MultiPolygon"):
        polys = list(geom.geoms) if geom.geom_type == "MultiPolygon" else [geom]
        if sum(len(r.coords) for p in polys for r in (p.exterior, *p.interiors)) > MAX_EDGES:
            raise QueryError(f"geometry has more than {MAX_EDGES} vertices")
        inside = "(" + " OR ".join(_ray_cast(p, lon, lat) for p in polys) + ")"
    elif geom.geom_type in ("LineString", "MultiLineString"):
        inside = "false"  # a point is on a line only by accident of floating point
    else:
        raise QueryError(f"{geom.geom_type} is not supported in {name}")
    return f"(NOT {inside})" if name == "st_disjoint" else inside


def _ray_cast(poly, lon: str, lat: str) -> str:
    x0, y0, x1, y1 = poly.bounds
    terms = []
    for ring in (poly.exterior, *poly.interiors):
        c = list(ring.coords)
        for (ax, ay), (bx, by) in zip(c, c[1:], strict=False):
            if ay == by:
                continue  # horizontal edges never cross the ray
            terms.append(f"(({_f(ay)} > {lat}) <> ({_f(by)} > {lat}) AND {lon} < "
                         f"{_f(bx - ax)} * ({lat} - {_f(ay)}) / {_f(by - ay)} + {_f(ax)})::int")
    if not terms:
        return "false"
    return (f"({lon} BETWEEN {_f(x0)} AND {_f(x1)} AND {lat} BETWEEN {_f(y0)} AND {_f(y1)} "
            f"AND mod({' + '.join(terms)}, 2) = 1)")

