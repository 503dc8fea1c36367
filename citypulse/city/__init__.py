"""The city model: the one map every stage shares (foundation; imports no stage).

In: a seed for the generated Dishui Lake city (0 is the canonical demo city).  Out: a
cached, read-only :class:`City` (GeoDataFrames in EPSG:4326; metric copies via
``city.metric(name)``).  Call :func:`build_city` from any stage (device_sim, ingest, twin,
analytics, dashboards); treat the frames as read-only.  Stable attribute names:

- ``city.lake``: name, area_m2, radius_m, geometry (Polygon).
- ``city.segments``: one row per DIRECTED road segment: segment_id (``"N1.00>N1.02"``),
  from_node, to_node, road (name), road_class (ring|radial|access), ring (1-4 or NA),
  radial (0-11 or NA), direction (cw|ccw|out|in), lanes, free_flow_kmh, capacity_veh_h,
  length_m, geometry (LineString offset 5 m to the right of the centre line).
- ``city.zones``: zone_id, name, zone_type (lake, lakeside, commercial, residential,
  education, industrial, logistics, port, green, plaza, metro_station), band, sector,
  area_m2, people_capacity, density_limit_per_1000m2, depot_node (port/logistics/industrial
  zones), geometry (Polygon).  Zones tile the city disc without overlap.
- ``city.nodes``: node_id, kind (junction|access|depot), ring, lon, lat, zone_id, geometry.
- ``city.gates``: gate_id, zone_id, name, lon, lat, geometry (metro station gates).
- ``city.graph``: networkx.DiGraph, edge attributes segment_id, length_m, free_flow_kmh,
  travel_time_s, lanes, capacity_veh_h.
- ``city.depots`` (zone_id -> depot node), ``city.zone_neighbours`` ((a, b) pairs).
- Helpers: ``zone_of(lon, lat)``, ``zones_of(lons, lats)``, ``nearest_segment(lon, lat,
  max_m)``, ``nearest_segments``, ``shortest_path(a, b)``, ``path_segments(a, b)``,
  ``point_along(segment_id, fraction)``, ``layers()``.

Where the city comes from: the generated Dishui Lake city (``build_city``, the default and
the demo) or an imported one (``import_city(FILE)``: OpenStreetMap ``.osm.pbf``, GeoJSON,
GeoPackage, GeoParquet), stored versioned in the database; ``active(conn)`` is the one every
stage uses.  Commands: ``citypulse city import|list|use|show``, ``citypulse twin export``.
"""

from typing import Any

_FROM = {"City": "model", "assemble": "model", "ZONE_TYPES": "model", "build_city": "dishui",
         "export": "store", "active": "store", "active_key": "store", "load": "store",
         "save": "store", "use": "store", "list_models": "store", "CityError": "store",
         "model_key": "store", "import_city": "importer", "ImportErrorReport": "importer"}
__all__ = sorted(_FROM)


def __getattr__(name: str) -> Any:
    # lazy, so `citypulse --help` does not pay for importing geopandas
    if name in _FROM:
        import importlib

        return getattr(importlib.import_module(f"citypulse.city.{_FROM[name]}"), name)
    raise AttributeError(name)
