"""NGSI-LD query language (``q``) and geo-queries (``georel``), evaluated on keyValues entities.

In: the text of the ``q``, ``georel``, ``geometry``, ``coordinates`` and ``geoproperty``
parameters (ETSI GS CIM 009, clauses 4.9 and 4.10).  Out: predicates ``entity -> bool``::

    match = parse_q('averageVehicleSpeed<20;(congested==true|occupancy>0.8)')
    near = parse_geo("near;maxDistance==500", "Point", "[121.93, 30.91]")
    [e for e in entities if match(e) and near(e)]

``q``: ``;`` is AND (binds tighter), ``|`` is OR, parentheses group; terms are ``attr``
(exists), ``attr OP value`` with ``== != > >= < <=``, ``attr~=regex`` / ``attr!~=regex``;
values are numbers, ``"strings"``, ``true``/``false``, ISO date-times, ranges ``a..b`` and
lists ``a,b,c`` (equality only); ``attr[key]`` reaches into a JSON value.  An array
attribute matches when one member does.  Geo: ``near;maxDistance==m`` /
``near;minDistance==m`` (metres, on an azimuthal equidistant projection centred on the
reference geometry), ``within``, ``contains``, ``intersects``, ``disjoint``, ``equals``,
``overlaps``.  Bad input raises :class:`QueryError` naming the parameter and position.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import shapely
from pyproj import Transformer
from shapely.geometry import shape

Predicate = Callable[[dict], bool]
GEORELS = ("near", "within", "contains", "intersects", "disjoint", "equals", "overlaps")
GEOMETRIES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon")


class QueryError(ValueError):
    """A malformed query parameter; ``parameter`` names it."""

    def __init__(self, parameter: str, problem: str) -> None:
        super().__init__(f"{parameter}: {problem}")
        self.parameter = parameter


_TOKEN = re.compile(r"""\s*(?:
    (?P<lp>\() | (?P<rp>\)) | (?P<and>;) | (?P<or>\|)
  | (?P<op>==|!=|>=|<=|!~=|~=|>|<)
  | (?P<attr>[A-Za-z_@][\w.:/#@-]*(?:\[[^\]]+\])*)
)""", re.X)
_DATETIME = re.compile(r"^\d{4}-\d\d-\d\d(?:T\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:?\d\d)?)?$")


def _scalar(text: str, pos: int) -> Any:
    t = text.strip()
    if len(t) >= 2 and t[0] == t[-1] == '"':
        return t[1:-1].replace('\\"', '"')
    if t in ("true", "false"):
        return t == "true"
    if _DATETIME.match(t):
        return _time(t)
    try:
        return float(t)
    except ValueError:
        raise QueryError("q", f"bad value {t!r} at {pos} (quote strings: \"text\")") from None


def _time(t: str) -> datetime:
    d = datetime.fromisoformat(t.replace("Z", "+00:00"))
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def _value_end(s: str, i: int) -> int:
    """Index after a value starting at ``i`` (a quoted string may hold ; | and parentheses)."""
    in_str = False
    while i < len(s):
        c = s[i]
        if c == '"' and (i == 0 or s[i - 1] != "\\"):
            in_str = not in_str
        elif not in_str and c in ";|)":
            return i
        i += 1
    if in_str:
        raise QueryError("q", "unterminated string")
    return i


def _get(entity: dict, path: str) -> Any:
    name, *keys = re.split(r"\[|\]\[", path.rstrip("]")) if "[" in path else (path,)
    v = entity.get(name.split(".")[0])
    for k in keys:
        v = v.get(k) if isinstance(v, dict) else None
    return v


def _comparable(a: Any, b: Any) -> tuple[Any, Any] | None:
    if isinstance(b, datetime):
        if not isinstance(a, str):
            return None
        try:
            return _time(a.split("/")[0]), b
        except ValueError:
            return None
    if isinstance(b, bool) or isinstance(a, bool):
        return (a, b) if isinstance(a, bool) and isinstance(b, bool) else None
    if isinstance(b, float):
        return (float(a), b) if isinstance(a, int | float) else None
    return (a, b) if isinstance(a, str) else None


_OPS = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b}


def _term(attr: str, op: str | None, raw: str | None, pos: int) -> Predicate:
    if op is None:
        return lambda e: _get(e, attr) is not None
    if op in ("~=", "!~="):
        try:
            rx = re.compile(raw or "")
        except re.error as exc:
            raise QueryError("q", f"bad pattern {raw!r} at {pos}: {exc}") from None
        want = op == "~="
        return lambda e: isinstance(_get(e, attr), str) and bool(rx.search(_get(e, attr))) == want

    def one(a: Any, test: Callable[[Any], bool]) -> bool:
        vals = a if isinstance(a, list) else [a]
        return any(test(v) for v in vals if v is not None)

    text = (raw or "").strip()
    if not text:
        raise QueryError("q", f"missing value after {op} at {pos}")
    if ".." in text and not text.startswith('"'):
        if op not in ("==", "!="):
            raise QueryError("q", f"a range needs == or != (at {pos})")
        lo_t, hi_t = text.split("..", 1)
        lo, hi = _scalar(lo_t, pos), _scalar(hi_t, pos)

        def in_range(v: Any) -> bool:
            a, b = _comparable(v, lo) or (None, None), _comparable(v, hi) or (None, None)
            return a[0] is not None and b[0] is not None and a[1] <= a[0] <= b[1]

        return (lambda e: one(_get(e, attr), in_range)) if op == "==" else \
            (lambda e: _get(e, attr) is not None and not one(_get(e, attr), in_range))
    parts = [p for p in re.findall(r'"(?:[^"\\]|\\.)*"|[^,]+', text)]
    if len(parts) > 1 and op not in ("==", "!="):
        raise QueryError("q", f"a list needs == or != (at {pos})")
    values = [_scalar(p, pos) for p in parts]
    fn = _OPS[op]

    def test(v: Any) -> bool:
        for b in values:
            pair = _comparable(v, b)
            if pair is not None and _OPS["=="](*pair):
                return True
        return False

    if len(values) > 1 or op in ("==", "!="):
        return (lambda e: one(_get(e, attr), test)) if op == "==" else \
            (lambda e: _get(e, attr) is not None and not one(_get(e, attr), test))
    b = values[0]
    return lambda e: one(_get(e, attr), lambda v: (p := _comparable(v, b)) is not None
                         and fn(*p))


class _Parser:
    def __init__(self, text: str) -> None:
        self.s, self.i = text, 0

    def peek(self) -> tuple[str, str] | None:
        m = _TOKEN.match(self.s, self.i)
        if not m or m.end() == self.i:
            return None
        return next((k, v) for k, v in m.groupdict().items() if v is not None)

    def take(self) -> tuple[str, str]:
        m = _TOKEN.match(self.s, self.i)
        tok = self.peek()
        if tok is None:
            raise QueryError("q", f"unexpected {self.s[self.i:self.i + 10]!r} at {self.i}")
        self.i = m.end()
        return tok

    def parse(self) -> Predicate:
        p = self.orexpr()
        if self.s[self.i:].strip():
            raise QueryError("q", f"unexpected {self.s[self.i:self.i + 10]!r} at {self.i}")
        return p

    def orexpr(self) -> Predicate:
        parts = [self.andexpr()]
        while self.peek() and self.peek()[0] == "or":
            self.take()
            parts.append(self.andexpr())
        return parts[0] if len(parts) == 1 else (lambda e: any(p(e) for p in parts))

    def andexpr(self) -> Predicate:
        parts = [self.atom()]
        while self.peek() and self.peek()[0] == "and":
            self.take()
            parts.append(self.atom())
        return parts[0] if len(parts) == 1 else (lambda e: all(p(e) for p in parts))

    def atom(self) -> Predicate:
        kind, text = self.take()
        if kind == "lp":
            p = self.orexpr()
            if self.take()[0] != "rp":
                raise QueryError("q", f"missing ')' at {self.i}")
            return p
        if kind != "attr":
            raise QueryError("q", f"expected an attribute name at {self.i - len(text)}")
        nxt = self.peek()
        if not nxt or nxt[0] != "op":
            return _term(text, None, None, self.i)
        _, op = self.take()
        start = self.i
        self.i = _value_end(self.s, self.i)
        return _term(text, op, self.s[start:self.i], start)


def parse_q(text: str) -> Predicate:
    """A predicate for the NGSI-LD query ``text``; QueryError when malformed."""
    if not text.strip():
        raise QueryError("q", "empty query")
    return _Parser(text).parse()


def parse_geo(georel: str, geometry: str | None, coordinates: str | None,
              geoproperty: str = "location") -> Predicate:
    """A predicate for an NGSI-LD geo-query; QueryError naming the bad parameter."""
    rel, *mods = georel.split(";")
    if rel not in GEORELS:
        raise QueryError("georel", f"{rel!r}: use one of {', '.join(GEORELS)}")
    if geometry not in GEOMETRIES:
        raise QueryError("geometry", f"{geometry!r}: use one of {', '.join(GEOMETRIES)}")
    try:
        ref = shape({"type": geometry, "coordinates": json.loads(coordinates or "")})
    except (ValueError, TypeError, IndexError, AttributeError,
            shapely.errors.GEOSException) as exc:
        raise QueryError("coordinates", f"not {geometry} coordinates as JSON ({exc})") from None
    if ref.is_empty or not ref.is_valid:
        raise QueryError("coordinates", f"not a valid {geometry}")

    def geom(e: dict):
        g = e.get(geoproperty)
        try:
            return shape(g) if isinstance(g, dict) else None
        except (ValueError, TypeError, AttributeError, shapely.errors.GEOSException):
            return None

    if rel != "near":
        if mods:
            raise QueryError("georel", f"{rel} takes no modifier")
        test = getattr(shapely, rel)
        pred = _with_bbox(lambda e: (g := geom(e)) is not None and bool(test(g, ref)),
                          None if rel == "disjoint" else ref.bounds)
        return pred
    m = re.fullmatch(r"(maxDistance|minDistance)==(\d+(?:\.\d+)?)", mods[0]) if len(mods) == 1 \
        else None
    if m is None:
        raise QueryError("georel", "near needs ;maxDistance==<metres> or ;minDistance==<metres>")
    limit, is_max = float(m.group(2)), m.group(1) == "maxDistance"
    c = ref.centroid
    to_m = Transformer.from_crs("EPSG:4326", f"+proj=aeqd +lat_0={c.y} +lon_0={c.x} "
                                "+datum=WGS84 +units=m", always_xy=True)

    def project(g):
        return shapely.transform(g, lambda xy: _stack(to_m.transform(xy[:, 0], xy[:, 1])))

    ref_m = project(ref)

    def near(e: dict) -> bool:
        g = geom(e)
        if g is None:
            return False
        d = shapely.distance(project(g), ref_m)
        return bool(d <= limit if is_max else d >= limit)

    if not is_max:
        return _with_bbox(near, None)
    dlat = limit / 110_000.0 * 1.1 + 1e-6
    dlon = dlat / max(0.05, math.cos(math.radians(c.y)))
    x0, y0, x1, y1 = ref.bounds
    return _with_bbox(near, (x0 - dlon, y0 - dlat, x1 + dlon, y1 + dlat))


class _GeoPredicate:
    """A geo predicate with ``bbox``: lon/lat bounds every match lies in (None: unknown)."""

    def __init__(self, fn: Predicate, bbox: tuple[float, float, float, float] | None) -> None:
        self.fn, self.bbox = fn, bbox

    def __call__(self, e: dict) -> bool:
        return self.fn(e)


def _with_bbox(fn: Predicate, bbox) -> _GeoPredicate:
    return _GeoPredicate(fn, bbox)


def _stack(xy):
    import numpy as np

    return np.column_stack(xy)
