"""SensorThings 1.1 $filter/$orderby parsing (section 9.3.3.5), malformed input included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from standards.sta.odata import Node, QueryError, parse_filter, parse_orderby


def test_precedence_or_and_not_comparison_arithmetic():
    n = parse_filter("result add 2 mul 3 gt 10 and not name eq 'a' or id eq 1")
    assert n.op == "or"
    left = n.args[0]
    assert left.op == "and" and left.args[1].op == "not"
    gt = left.args[0]
    assert gt.op == "gt" and gt.args[0].op == "add" and gt.args[0].args[1].op == "mul"


def test_literals_strings_times_durations_geometry():
    n = parse_filter("name eq 'O''Brien'")
    assert n.args[1] == Node("lit", "O'Brien", kind="string")
    n = parse_filter("phenomenonTime ge 2026-12-01T00:00:00Z")
    assert n.args[1].value == datetime(2026, 12, 1, tzinfo=UTC)
    n = parse_filter("phenomenonTime gt now() sub duration'P1DT2H'")
    assert n.args[1].args[1].value == timedelta(days=1, hours=2)
    n = parse_filter("st_within(location, geography'POLYGON((1 2, 3 4, 5 6, 1 2))')")
    assert n.op == "call" and n.value == "st_within"
    assert n.args[0] == Node("prop", ("location",))
    assert n.args[1].kind == "geometry" and n.args[1].value.startswith("POLYGON")
    assert parse_filter("result eq -1.5e2").args[1] == Node("neg", args=(
        Node("lit", 150.0, kind="number"),))


def test_paths_and_functions():
    n = parse_filter("substringof('trf', Thing/name) and year(phenomenonTime) eq 2026")
    call = n.args[0]
    assert call.value == "substringof" and call.args[1] == Node("prop", ("Thing", "name"))
    assert parse_filter("geo.distance(location, geography'POINT(1 2)') lt 0.1").args[0].value \
        == "geo.distance"


@pytest.mark.parametrize("bad", [
    "", "name eq", "eq 1", "(result gt 1", "result gt 1)", "name eq 'open",
    "result gt 1 and", "result # 2", "phenomenonTime gt duration'1D'",
    "phenomenonTime gt 2026-13-40T00:00:00Z", "f(1,", "name eq 'a' 'b'",
])
def test_malformed_filters_raise_query_error_with_a_message(bad):
    with pytest.raises(QueryError) as err:
        parse_filter(bad)
    assert str(err.value)


def test_orderby_directions():
    items = parse_orderby("phenomenonTime desc, result, name asc")
    assert [(n.value, d) for n, d in items] == [
        (("phenomenonTime",), True), (("result",), False), (("name",), False)]
    with pytest.raises(QueryError):
        parse_orderby("phenomenonTime sideways")
