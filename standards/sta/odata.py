"""The SensorThings (OData subset) query language: ``$filter`` and ``$orderby`` parsed to trees.

In: the text of a ``$filter`` or ``$orderby`` option.  Out: a tree of :class:`Node` s
(``parse_filter``) or a list of ``(Node, descending)`` (``parse_orderby``); any syntax error
raises :class:`QueryError` with the position and what was expected, which the API answers
with 400.  Nothing here touches SQL: :mod:`standards.sta.sqlgen` compiles the tree to
parameterised SQL.

Grammar (SensorThings 1.1, section 9.3.3.5): ``or`` < ``and`` < ``not`` < comparison
(``eq ne gt ge lt le``) < additive (``add sub``) < multiplicative (``mul div mod``) < unary
``-`` < primary: literal (number, ``'string'`` with ``''`` escapes, ``true``/``false``/
``null``, ISO 8601 date-times, ``duration'P1D'``, ``geography'POINT(1 2)'``), property path
(``a/b/c``), function call ``name(args)`` or ``( expr )``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

COMPARISONS = ("eq", "ne", "gt", "ge", "lt", "le")
ARITHMETIC = ("add", "sub", "mul", "div", "mod")

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<geo>(?:geography|geometry)'(?:[^']|'')*')
  | (?P<dur>duration'(?:[^']|'')*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)?)
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<string>'(?:[^']|'')*')
  | (?P<name>[A-Za-z_@][A-Za-z0-9_.@]*(?:/[A-Za-z_@][A-Za-z0-9_.@]*)*)
  | (?P<punct>[(),-])
""", re.VERBOSE)

_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


class QueryError(ValueError):
    """A malformed query option; its message says where and what was expected."""


@dataclass(frozen=True)
class Node:
    """One node of a query tree.

    ``op`` is ``lit`` (``value`` the Python value, ``kind`` one of number, string, bool,
    null, datetime, duration, geometry), ``prop`` (``value`` a tuple of path segments),
    ``call`` (``value`` the function name, ``args``), a comparison, logical (``and or not``)
    or arithmetic operator with ``args``, or ``neg``.
    """

    op: str
    value: object = None
    args: tuple[Node, ...] = ()
    kind: str = ""


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _tokens(text: str) -> list[_Tok]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise QueryError(f"unexpected character {text[pos]!r} at position {pos}")
        if m.lastgroup != "ws":
            out.append(_Tok(m.lastgroup, m.group(), pos))
        pos = m.end()
    out.append(_Tok("end", "", len(text)))
    return out


def _duration(text: str) -> timedelta:
    m = _DURATION.match(text)
    if m is None or text == "P":
        raise QueryError(f"bad duration {text!r}: use ISO 8601 like P1DT2H30M")
    d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    return timedelta(days=d, hours=h, minutes=mi, seconds=s)


class _Parser:
    def __init__(self, text: str) -> None:
        if not text.strip():
            raise QueryError("empty expression")
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def word(self, *words: str) -> str | None:
        tok = self.peek()
        if tok.kind == "name" and tok.text in words:
            self.i += 1
            return tok.text
        return None

    def expect(self, text: str) -> None:
        tok = self.take()
        if tok.text != text:
            got = tok.text or "end of input"
            raise QueryError(f"expected {text!r} at position {tok.pos}, got {got!r}")

    def done(self) -> None:
        tok = self.peek()
        if tok.kind != "end":
            raise QueryError(f"unexpected {tok.text!r} at position {tok.pos}")

    def expr(self) -> Node:
        left = self.conj()
        while self.word("or"):
            left = Node("or", args=(left, self.conj()))
        return left

    def conj(self) -> Node:
        left = self.negation()
        while self.word("and"):
            left = Node("and", args=(left, self.negation()))
        return left

    def negation(self) -> Node:
        if self.word("not"):
            return Node("not", args=(self.negation(),))
        return self.comparison()

    def comparison(self) -> Node:
        left = self.additive()
        op = self.word(*COMPARISONS)
        if op:
            return Node(op, args=(left, self.additive()))
        return left

    def additive(self) -> Node:
        left = self.multiplicative()
        while op := self.word("add", "sub"):
            left = Node(op, args=(left, self.multiplicative()))
        return left

    def multiplicative(self) -> Node:
        left = self.unary()
        while op := self.word("mul", "div", "mod"):
            left = Node(op, args=(left, self.unary()))
        return left

    def unary(self) -> Node:
        if self.peek().text == "-":
            self.take()
            return Node("neg", args=(self.unary(),))
        return self.primary()

    def primary(self) -> Node:
        tok = self.take()
        if tok.text == "(":
            inner = self.expr()
            self.expect(")")
            return inner
        if tok.kind == "number":
            num = float(tok.text) if any(c in tok.text for c in ".eE") else int(tok.text)
            return Node("lit", num, kind="number")
        if tok.kind == "string":
            return Node("lit", tok.text[1:-1].replace("''", "'"), kind="string")
        if tok.kind == "datetime":
            try:
                value = datetime.fromisoformat(tok.text)
            except ValueError as exc:
                raise QueryError(f"bad date-time {tok.text!r} at position {tok.pos}") from exc
            return Node("lit", value, kind="datetime")
        if tok.kind == "dur":
            return Node("lit", _duration(tok.text[9:-1]), kind="duration")
        if tok.kind == "geo":
            body = tok.text[tok.text.index("'") + 1:-1]
            return Node("lit", body, kind="geometry")
        if tok.kind == "name":
            if tok.text in ("true", "false"):
                return Node("lit", tok.text == "true", kind="bool")
            if tok.text == "null":
                return Node("lit", None, kind="null")
            if self.peek().text == "(":
                self.take()
                args: list[Node] = []
                if self.peek().text != ")":
                    args.append(self.expr())
                    while self.peek().text == ",":
                        self.take()
                        args.append(self.expr())
                self.expect(")")
                return Node("call", tok.text.lower(), tuple(args))
            if tok.text in COMPARISONS + ARITHMETIC + ("and", "or", "not"):
                raise QueryError(f"operator {tok.text!r} at position {tok.pos} lacks an operand")
            return Node("prop", tuple(tok.text.split("/")))
        got = tok.text or "end of input"
        raise QueryError(f"expected a value, property or function at position {tok.pos}, "
                         f"got {got!r}")


def parse_filter(text: str) -> Node:
    """The tree of a ``$filter`` expression; raises :class:`QueryError` when malformed."""
    p = _Parser(text)
    node = p.expr()
    p.done()
    return node


def parse_orderby(text: str) -> list[tuple[Node, bool]]:
    """``[(expression, descending)]`` of an ``$orderby`` list (``a desc, b asc``)."""
    p = _Parser(text)
    out = [_order_item(p)]
    while p.peek().text == ",":
        p.take()
        out.append(_order_item(p))
    p.done()
    return out


def _order_item(p: _Parser) -> tuple[Node, bool]:
    node = p.additive()
    direction = p.word("asc", "desc")
    return node, direction == "desc"
