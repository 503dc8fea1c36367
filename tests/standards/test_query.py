"""SensorThings query options (section 9.3) parsed and checked, $expand nesting included."""

from __future__ import annotations

import pytest

from standards.sta.odata import QueryError
from standards.sta.query import MAX_TOP, parse_expand, parse_options


def test_options_parsed():
    o = parse_options({"$top": "5", "$skip": "10", "$count": "true", "$select": "id,name",
                       "$orderby": "name desc", "$filter": "id gt 3", "custom": "kept out"})
    assert (o.top, o.skip, o.count, o.select) == (5, 10, True, ["id", "name"])
    assert o.orderby[0][1] is True and o.filter.op == "gt"
    assert o.raw == {"$top": "5", "$skip": "10", "$count": "true", "$select": "id,name",
                     "$orderby": "name desc", "$filter": "id gt 3"}
    assert parse_options({}).limit == 100


def test_nested_expand_with_options_and_paths():
    (ds,) = parse_expand("Datastreams($select=name;$top=2;$filter=name eq 'a;b(';"
                         "$expand=Observations($top=1;$orderby=phenomenonTime desc),Sensor)")
    assert ds.nav == "Datastreams" and ds.options.top == 2 and ds.options.select == ["name"]
    assert ds.options.filter.args[1].value == "a;b("
    obs, sensor = ds.options.expand
    assert (obs.nav, obs.options.top, sensor.nav) == ("Observations", 1, "Sensor")
    (thing,) = parse_expand("Thing/Locations,Thing/Datastreams($top=1)")
    assert thing.nav == "Thing"
    assert [e.nav for e in thing.options.expand] == ["Locations", "Datastreams"]


@pytest.mark.parametrize("args", [
    {"$top": "-1"}, {"$top": str(MAX_TOP + 1)}, {"$skip": "x"}, {"$count": "1"},
    {"$select": "a,,b"}, {"$expand": "Datastreams("}, {"$expand": "Datastreams($top)"},
    {"$expand": "Data streams"}, {"$expand": "A//B"}, {"$resultFormat": "GeoJSON"},
    {"$unknown": "1"}, {"$filter": ""}, {"$orderby": "name up"},
    {"$expand": "Observations($resultFormat=dataArray)"},
])
def test_malformed_options_raise(args):
    with pytest.raises(QueryError):
        parse_options(args)


def test_an_option_given_twice_is_refused():
    with pytest.raises(QueryError, match="twice"):
        parse_options([("$top", "1"), ("$top", "2")])
