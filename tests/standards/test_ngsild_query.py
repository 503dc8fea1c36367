"""The NGSI-LD query language and geo-queries, from the text of ETSI GS CIM 009 4.9/4.10."""

from __future__ import annotations

import pytest
from pyproj import Geod

from standards.ngsild.query import QueryError, parse_geo, parse_q

E = {"speed": 5.0, "name": "Ring; north (A)", "congested": True, "props": ["x", "y"],
     "dateObserved": "2026-12-01T04:02:00Z/2026-12-01T04:07:00Z", "extra": {"k": 3}}


@pytest.mark.parametrize(("q", "want"), [
    ("speed>4", True), ("speed>=5", True), ("speed<5", False), ("speed!=5", False),
    ("speed>4;congested==true", True), ("speed<4|congested==false", False),
    ('(speed<4|congested==true);name=="Ring; north (A)"', True),
    ("speed==1..6", True), ("speed==6..9", False), ("speed!=6..9", True),
    ('props=="y"', True), ('props=="z","x"', True), ('props=="z"', False),
    ("name~=^Ring", True), ("name!~=^Ring", False), ("missing", False), ("speed", True),
    ("missing>3", False), ("dateObserved>2026-12-01T04:00:00Z", True),
    ("dateObserved<2026-12-01T04:00:00Z", False), ("extra[k]==3", True),
    ('speed=="5"', False),  # a string never equals a number
])
def test_q(q, want):
    assert parse_q(q)(E) is want


@pytest.mark.parametrize("q", ["", "speed>", "speed>>3", "(speed>3", "speed>3)",
                               'name=="open', ";speed", "speed>1..3", "speed>1,2",
                               "name~=(", "speed>abc"])
def test_malformed_q_is_refused_with_the_parameter(q):
    with pytest.raises(QueryError) as err:
        parse_q(q)
    assert err.value.parameter == "q"


def test_near_is_geodesic_metres():
    geod = Geod(ellps="WGS84")
    lon, lat = 121.93, 30.91
    near = parse_geo("near;maxDistance==1000", "Point", f"[{lon},{lat}]")
    for az in range(0, 360, 30):
        for d, inside in ((990, True), (1010, False)):
            x, y, _ = geod.fwd(lon, lat, az, d)
            assert near({"location": {"type": "Point", "coordinates": [x, y]}}) is inside
    far = parse_geo("near;minDistance==1000", "Point", f"[{lon},{lat}]")
    assert far({"location": {"type": "Point", "coordinates": [lon, lat + 0.02]}})
    assert not far({"location": {"type": "Point", "coordinates": [lon, lat]}})
    assert near.bbox[0] < lon < near.bbox[2] and near.bbox[1] < lat < near.bbox[3]


def test_relations_on_shapes():
    square = "[[[121,30],[122,30],[122,31],[121,31],[121,30]]]"
    line = {"location": {"type": "LineString", "coordinates": [[120.5, 30.5], [121.5, 30.5]]}}
    inner = {"location": {"type": "Point", "coordinates": [121.5, 30.5]}}
    assert parse_geo("within", "Polygon", square)(inner)
    assert not parse_geo("within", "Polygon", square)(line)
    assert parse_geo("intersects", "Polygon", square)(line)
    assert parse_geo("disjoint", "Polygon", square)(
        {"location": {"type": "Point", "coordinates": [125, 30]}})
    assert not parse_geo("within", "Polygon", square)({"name": "no location"})


@pytest.mark.parametrize(("georel", "geometry", "coords", "param"), [
    ("inside", "Point", "[1,2]", "georel"), ("near", "Point", "[1,2]", "georel"),
    ("near;maxDistance==x", "Point", "[1,2]", "georel"),
    ("within;maxDistance==5", "Polygon", "[[[0,0],[1,0],[1,1],[0,0]]]", "georel"),
    ("within", "Circle", "[1,2]", "geometry"), ("within", "Polygon", "[1,2]", "coordinates"),
    ("within", "Polygon", "not json", "coordinates"),
    ("within", "Polygon", "[[[0,0],[1,1],[1,0],[0,1],[0,0]]]", "coordinates"),  # self-crossing
])
def test_malformed_geo_names_the_parameter(georel, geometry, coords, param):
    with pytest.raises(QueryError) as err:
        parse_geo(georel, geometry, coords)
    assert err.value.parameter == param
