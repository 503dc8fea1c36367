"""SensorThings query options (section 9.3): parsed and checked before any SQL runs.

In: the request's query parameters (or the text inside an ``$expand`` item's parentheses).
Out: :func:`parse_options` -> :class:`Options` (``$filter``/``$orderby`` as trees,
``$top``, ``$skip``, ``$count``, ``$select``, nested ``$expand``, ``$resultFormat``);
anything malformed raises :class:`~standards.sta.odata.QueryError` (answered 400).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from standards.sta.odata import Node, QueryError, parse_filter, parse_orderby

DEFAULT_TOP = 100
MAX_TOP = 10000
KNOWN = ("$filter", "$orderby", "$top", "$skip", "$count", "$select", "$expand",
         "$resultFormat")
_NAME = re.compile(r"^[A-Za-z@][A-Za-z0-9_.@]*(/[A-Za-z@][A-Za-z0-9_.@]*)*$")


@dataclass
class Expand:
    """One ``$expand`` item: a navigation property and the options applied to it."""

    nav: str
    options: Options


@dataclass
class Options:
    """Checked query options of one request (or of one expanded navigation)."""

    filter: Node | None = None
    orderby: list[tuple[Node, bool]] | None = None
    top: int | None = None
    skip: int = 0
    count: bool = False
    select: list[str] | None = None
    expand: list[Expand] = field(default_factory=list)
    result_format: str | None = None
    raw: dict[str, str] = field(default_factory=dict)

    @property
    def limit(self) -> int:
        """Rows per page: ``$top`` or the default page size."""
        return DEFAULT_TOP if self.top is None else self.top


def _int(name: str, text: str) -> int:
    if not re.fullmatch(r"\d{1,9}", text.strip()):
        raise QueryError(f"{name} must be a non-negative integer, got {text!r}")
    return int(text)


def parse_options(args: Mapping[str, str] | list[tuple[str, str]]) -> Options:
    """Options from ``(name, value)`` pairs; QueryError on an unknown/duplicate/bad one."""
    pairs = list(args.items()) if isinstance(args, Mapping) else list(args)
    o = Options()
    seen = set()
    for name, value in pairs:
        if not name.startswith("$"):
            continue  # custom options are allowed by OData and ignored
        if name not in KNOWN:
            raise QueryError(f"unknown query option {name!r}; known: {', '.join(KNOWN)}")
        if name in seen:
            raise QueryError(f"query option {name} given twice")
        seen.add(name)
        o.raw[name] = value
        if name == "$filter":
            o.filter = parse_filter(value)
        elif name == "$orderby":
            o.orderby = parse_orderby(value)
        elif name == "$top":
            o.top = _int("$top", value)
            if o.top > MAX_TOP:
                raise QueryError(f"$top is at most {MAX_TOP}; page with @iot.nextLink")
        elif name == "$skip":
            o.skip = _int("$skip", value)
        elif name == "$count":
            if value not in ("true", "false"):
                raise QueryError(f"$count must be true or false, got {value!r}")
            o.count = value == "true"
        elif name == "$select":
            o.select = [s.strip() for s in value.split(",")]
            bad = [s for s in o.select if not _NAME.match(s)]
            if bad or not o.select:
                raise QueryError(f"$select: bad property name {bad[0] if bad else ''!r}")
        elif name == "$expand":
            o.expand = parse_expand(value)
        elif name == "$resultFormat":
            if value != "dataArray":
                raise QueryError(f"$resultFormat: only dataArray is supported, got {value!r}")
            o.result_format = value
    return o


def _split(text: str, sep: str) -> list[str]:
    """Split at ``sep`` outside parentheses and quotes."""
    out, depth, quote, start = [], 0, False, 0
    for i, ch in enumerate(text):
        if ch == "'":
            quote = not quote
        elif quote:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise QueryError(f"unbalanced ')' at position {i} of {text!r}")
        elif ch == sep and depth == 0:
            out.append(text[start:i])
            start = i + 1
    if depth or quote:
        raise QueryError(f"unbalanced parentheses or quotes in {text!r}")
    out.append(text[start:])
    return out


def parse_expand(text: str) -> list[Expand]:
    """``$expand`` items, nested paths (``A/B``) and options (``A($top=1;$expand=B)``)."""
    items = []
    for part in _split(text, ","):
        part = part.strip()
        m = re.fullmatch(r"([A-Za-z][A-Za-z/]*)(?:\((.*)\))?", part, re.S)
        if not m or "//" in m.group(1) or m.group(1).endswith("/"):
            raise QueryError(f"$expand: bad item {part!r}; use Nav, Nav/Nav or Nav($top=1)")
        inner = []
        if m.group(2) is not None:
            for opt in _split(m.group(2), ";"):
                if "=" not in opt:
                    raise QueryError(f"$expand: option {opt!r} needs $name=value")
                k, v = opt.split("=", 1)
                inner.append((k.strip(), v))
        opts = parse_options(inner)
        if opts.result_format:
            raise QueryError("$resultFormat is not allowed inside $expand")
        path = m.group(1).split("/")
        node = Expand(path[-1], opts)
        for nav in reversed(path[:-1]):
            node = Expand(nav, Options(expand=[node]))
        items.append(node)
    return _merge(items)


def _merge(items: list[Expand]) -> list[Expand]:
    """``A/B,A/C`` -> one ``A`` expanding both."""
    out: dict[str, Expand] = {}
    for it in items:
        if it.nav in out:
            out[it.nav].options.expand = _merge(out[it.nav].options.expand + it.options.expand)
        else:
            out[it.nav] = it
    return list(out.values())
