"""Geometry of the generated Dishui Lake city model."""

from __future__ import annotations

import json
import math

import geopandas as gpd
import networkx as nx
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod

from citypulse.city import build_city, export
from citypulse.city.dishui import (
    CENTER_LAT,
    CENTER_LON,
    CITY_RADIUS_M,
    LAKE_RADIUS_M,
    SEGMENT_COLUMNS,
    ZONE_COLUMNS,
    _build,
    city_union,
)

GEOD = Geod(ellps="WGS84")


@pytest.fixture(scope="module")
def city():
    return build_city()


def test_deterministic_and_cached(city):
    assert build_city(0) is city
    other = _build(0)
    assert list(other.segments.segment_id) == list(city.segments.segment_id)
    assert other.zones.geometry.geom_equals_exact(city.zones.geometry, 1e-9).all()


def test_lake_where_it_should_be(city):
    lake = city.lake.geometry.iloc[0]
    c = lake.centroid
    _, _, dist = GEOD.inv(c.x, c.y, CENTER_LON, CENTER_LAT)
    assert dist < 5
    # about 2.7 km across, measured on the ellipsoid
    minx, miny, maxx, maxy = lake.bounds
    _, _, across_ew = GEOD.inv(minx, CENTER_LAT, maxx, CENTER_LAT)
    _, _, across_ns = GEOD.inv(CENTER_LON, miny, CENTER_LON, maxy)
    assert 2650 < across_ew < 2750 and 2650 < across_ns < 2750
    area = city.lake.area_m2.iloc[0]
    assert area == pytest.approx(math.pi * LAKE_RADIUS_M**2, rel=0.01)
    assert city.zone_of(CENTER_LON, CENTER_LAT) == "Z-LAKE"


def test_segments_connected_in_graph(city):
    g = city.graph
    assert nx.is_strongly_connected(g)
    assert g.number_of_edges() == len(city.segments)
    assert city.segments.segment_id.is_unique
    assert set(SEGMENT_COLUMNS) <= set(city.segments.columns)
    for s in city.segments.itertuples():
        assert g.has_edge(s.from_node, s.to_node)
        # the geometry starts near its from node and ends near its to node (lane offset 5 m)
        a = g.nodes[s.from_node]
        b = g.nodes[s.to_node]
        x0, y0 = s.geometry.coords[0]
        x1, y1 = s.geometry.coords[-1]
        assert GEOD.inv(a["lon"], a["lat"], x0, y0)[2] < 8
        assert GEOD.inv(b["lon"], b["lat"], x1, y1)[2] < 8
    # every segment has its opposite direction
    pairs = set(zip(city.segments.from_node, city.segments.to_node, strict=True))
    assert all((v, u) in pairs for u, v in pairs)


def test_lengths_in_metres(city):
    seg = city.segments.set_index("segment_id")
    # ring 1 (r = 1600 m) between two radials 30 degrees apart: arc 2*pi*1600/12
    assert seg.loc["N1.00>N1.02", "length_m"] == pytest.approx(2 * math.pi * 1600 / 12, rel=0.005)
    # radial from ring 1 to ring 2: 800 m
    assert seg.loc["N1.00>N2.00", "length_m"] == pytest.approx(800, rel=0.001)
    # geodesic length of the lane geometry agrees with length_m within lane-offset effects
    for s in city.segments.sample(20, random_state=1).itertuples():
        geo = GEOD.geometry_length(s.geometry)
        assert geo == pytest.approx(s.length_m, rel=0.03, abs=15)
    assert (city.segments.free_flow_kmh > 0).all()
    assert (city.segments.capacity_veh_h == city.segments.lanes * 1800).all()


def test_zones_do_not_overlap_and_cover_city(city):
    zm = city.metric("zones")
    assert zm.crs.to_epsg() == 32651
    assert set(ZONE_COLUMNS) <= set(city.zones.columns)
    assert city.zones.zone_id.is_unique
    geoms = zm.geometry.values
    assert shapely.is_valid(geoms).all()
    tree = shapely.STRtree(geoms)
    a, b = tree.query(geoms, predicate="intersects")
    keep = a < b
    overlap = shapely.area(shapely.intersection(geoms[a[keep]], geoms[b[keep]]))
    assert overlap.max() < 1.0  # m2: only shared borders
    union = city_union(city)
    disc = math.pi * CITY_RADIUS_M**2
    assert union.area == pytest.approx(disc, rel=0.002)
    assert zm.area.sum() == pytest.approx(union.area, rel=1e-6)
    assert len(union.interiors) == 0 if union.geom_type == "Polygon" else False
    # area_m2 is metric area
    assert (zm.area - city.zones.area_m2).abs().max() < 1.0


def test_zone_kinds_present(city):
    types = set(city.zones.zone_type)
    for t in ("lake", "lakeside", "port", "logistics", "industrial", "residential",
              "metro_station", "plaza"):
        assert t in types
    # the port and the logistics park lie south-east of the lake
    for zid in ("Z-PORT", "Z4-04"):
        c = city.zones.set_index("zone_id").geometry[zid].centroid
        assert c.x > CENTER_LON and c.y < CENTER_LAT
    # each metro station has gates on its boundary, and depots lie in their zone
    zm = city.metric("zones").set_index("zone_id")
    for g in city.gates.itertuples():
        assert g.zone_id.startswith("ZM-")
    for zid, node in city.depots.items():
        n = city.nodes.set_index("node_id").loc[node]
        assert n.zone_id == zid
    assert len(zm) == len(city.zones)


def test_zone_of_and_nearest_segment(city):
    # a point on a segment's lane maps to that segment; outside the city to None
    lon, lat = city.point_along("N2.04>N2.06", 0.3)
    assert city.nearest_segment(lon, lat, max_m=10) == "N2.04>N2.06"
    assert city.nearest_segment(CENTER_LON, CENTER_LAT, max_m=25) is None
    assert city.zone_of(122.2, 30.5) is None
    ids = city.zones_of([CENTER_LON, 122.2], [CENTER_LAT, 30.5])
    assert list(ids) == ["Z-LAKE", None]


def test_shortest_path(city):
    path = city.shortest_path(city.depots["Z-PORT"], city.depots["Z4-04"])
    assert path[0] == "D-PORT" and path[-1] == "D-4-04"
    segs = city.path_segments(path[0], path[-1])
    assert len(segs) == len(path) - 1
    assert all(a.split(">")[1] == b.split(">")[0] for a, b in zip(segs, segs[1:], strict=False))


def test_neighbours(city):
    pairs = set(city.zone_neighbours)
    assert ("Z-LAKE", "Z1-00") in pairs
    assert ("Z1-00", "Z1-01") in pairs
    assert ("Z1-00", "Z1-06") not in pairs
    assert ("Z2-06", "ZM-01") in pairs


def test_export_geojson_and_geoparquet(city, tmp_path):
    from typer.testing import CliRunner

    from citypulse.cli import app

    out = tmp_path / "city.geojson"
    res = CliRunner().invoke(app, ["twin", "export", "--format", "geojson", "--out", str(out)])
    assert res.exit_code == 0, res.output
    fc = json.loads(out.read_text())
    layers = {}
    for f in fc["features"]:
        layers[f["properties"]["layer"]] = layers.get(f["properties"]["layer"], 0) + 1
    assert layers == {"lake": 1, "zone": len(city.zones), "road_segment": len(city.segments),
                      "node": len(city.nodes), "gate": len(city.gates)}
    seg = next(f for f in fc["features"] if f["properties"]["layer"] == "road_segment")
    assert {"segment_id", "lanes", "free_flow_kmh", "length_m"} <= set(seg["properties"])
    pq = tmp_path / "city.parquet"
    assert export(city, str(pq), "geoparquet") == len(fc["features"])
    back = gpd.read_parquet(pq)
    assert back.crs.to_epsg() == 4326
    assert (back.layer == "zone").sum() == len(city.zones)


def test_other_seed_is_deterministic_and_valid():
    a, b = build_city(3), _build(3)
    assert list(a.segments.segment_id) == list(b.segments.segment_id)
    assert a.segments.length_m.tolist() == b.segments.length_m.tolist()
    assert a.segments.length_m.tolist() != build_city(0).segments.length_m.tolist()
    assert nx.is_strongly_connected(a.graph)


@given(r=st.floats(0, CITY_RADIUS_M * 1.5), bearing=st.floats(0, 360))
@settings(max_examples=200, deadline=None)
def test_every_point_in_the_city_has_exactly_one_zone(r, bearing):
    city = build_city()
    cx, cy = city.to_metric(CENTER_LON, CENTER_LAT)
    b = math.radians(bearing)
    x, y = cx + r * math.sin(b), cy + r * math.cos(b)
    from citypulse.city.dishui import _TO_WGS

    lon, lat = _TO_WGS.transform(x, y)
    zone = city.zone_of(lon, lat)
    inside = r < CITY_RADIUS_M * math.cos(math.radians(1)) - 1  # polygonal disc, 2-degree steps
    if inside:
        assert zone is not None
        if r < LAKE_RADIUS_M * math.cos(math.radians(1)) - 1:
            assert zone == "Z-LAKE"
    if r > CITY_RADIUS_M + 1:
        assert zone is None
