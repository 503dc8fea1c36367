"""Zones from polygons (districts, land use, water), typed to the catalogue, tiling the city.

In: candidate polygons in a metric CRS with ``zone_type`` (a key of
:data:`citypulse.city.model.ZONE_TYPES`), ``name`` and ``source_id``, and the city's
outline.  Out: zones that do not overlap and together cover the outline: polygons are
repaired (shapely ``make_valid``), clipped to the outline, smaller ones cut out of larger
ones (a park inside a residential area stays a park), and what no polygon covers is cut
into a grid (``grid_m`` cells, type ``mixed``).  Pieces smaller than ``min_area_m2`` are
dropped and reported.

Land-use values to zone types (:data:`LANDUSE_TYPES`): OSM ``landuse``/``leisure``/
``amenity``/``natural``/``place`` values (``place=square`` is a plaza, districts, suburbs,
quarters and city blocks are ``mixed``); anything else is ``mixed``.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

LANDUSE_TYPES: dict[str, str] = {
    "residential": "residential", "apartments": "residential", "housing": "residential",
    "commercial": "commercial", "retail": "commercial", "civic": "commercial",
    "civil": "commercial", "office": "commercial", "mixed_use": "commercial",
    "industrial": "industrial", "construction": "industrial", "quarry": "industrial",
    "logistics": "logistics", "railway": "logistics", "depot": "logistics",
    "port": "port", "harbour": "port",
    "education": "education", "school": "education", "university": "education",
    "college": "education", "religious": "commercial",
    "grass": "green", "park": "green", "forest": "green", "meadow": "green",
    "recreation_ground": "green", "cemetery": "green", "village_green": "green",
    "garden": "green", "allotments": "green", "wood": "green", "scrub": "green",
    "heath": "green", "wetland": "green", "farmland": "green", "greenfield": "green",
    "plaza": "plaza", "pedestrian": "plaza", "square": "plaza", "marketplace": "plaza",
    "station": "metro_station", "district": "mixed", "suburb": "mixed", "quarter": "mixed",
    "neighbourhood": "mixed", "city_block": "mixed", "borough": "mixed", "water": "lake", "basin": "lake", "reservoir": "lake",
    "lake": "lake", "pond": "lake", "bay": "lake", "river": "lake", "riverbank": "lake",
}


def zone_type_of(values: pd.Series, mapping: dict[str, str] | None = None,
                 default: str = "mixed") -> np.ndarray:
    """Zone types for land-use values (``mapping`` first, then :data:`LANDUSE_TYPES`)."""
    from citypulse.city.model import ZONE_TYPES

    table = {**LANDUSE_TYPES, **(mapping or {})}
    text = values.astype("string").str.strip().str.lower().fillna("")
    out = text.map(lambda v: v if v in ZONE_TYPES else table.get(v, default))
    return out.to_numpy(dtype=object)


def tile(candidates: gpd.GeoDataFrame, outline: shapely.Geometry, grid_m: float = 500.0,
         min_area_m2: float = 2000.0) -> tuple[gpd.GeoDataFrame, list[dict]]:
    """Non-overlapping zones covering ``outline`` (metric CRS); returns (zones, dropped)."""
    crs = candidates.crs
    dropped: list[dict] = []
    geoms = shapely.make_valid(candidates.geometry.values)
    geoms = shapely.intersection(geoms, outline)
    geoms = np.array([_polygonal(g) for g in geoms], dtype=object)
    area = shapely.area(geoms)
    small = area < min_area_m2
    for i in np.flatnonzero(small):
        dropped.append({"source_id": str(candidates["source_id"].iloc[i]),
                        "reason": f"smaller than {min_area_m2:g} m2 inside the city "
                                  f"({area[i]:.0f} m2)"})
    keep = np.flatnonzero(~small)
    keep = keep[np.argsort(area[keep], kind="stable")]  # smallest first: specific wins
    taken: list[shapely.Geometry] = []
    tree, in_tree = None, 0
    rows = []
    for i in keep:
        g = geoms[i]
        hits = [taken[j] for j in tree.query(g, predicate="intersects")] if tree else []
        hits += [t for t in taken[in_tree:] if t.intersects(g)]
        if hits:
            g = _polygonal(shapely.difference(g, shapely.union_all(hits)))
        if g.is_empty or g.area < min_area_m2:
            dropped.append({"source_id": str(candidates["source_id"].iloc[i]),
                            "reason": "covered by smaller zones"})
            continue
        taken.append(g)
        if len(taken) - in_tree >= 64:
            tree, in_tree = shapely.STRtree(taken), len(taken)
        rows.append({"source_id": candidates["source_id"].iloc[i],
                     "name": candidates["name"].iloc[i],
                     "zone_type": candidates["zone_type"].iloc[i], "geometry": g})
    rest = shapely.difference(outline, shapely.union_all(taken)) if taken else outline
    rows += _grid(rest, grid_m, min_area_m2)
    zones = gpd.GeoDataFrame(rows, geometry="geometry", crs=crs) if rows else gpd.GeoDataFrame(
        {"source_id": [], "name": [], "zone_type": []}, geometry=[], crs=crs)
    return zones, dropped


def _polygonal(g: shapely.Geometry) -> shapely.Geometry:
    """The polygonal part of a geometry (make_valid/intersection may add lines/points)."""
    if g is None or g.is_empty:
        return shapely.Polygon()
    if g.geom_type in ("Polygon", "MultiPolygon"):
        return g
    parts = [p for p in shapely.get_parts(g) if p.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else shapely.Polygon()


def _grid(rest: shapely.Geometry, grid_m: float, min_area_m2: float) -> list[dict]:
    """Grid cells (``grid_m``) over what no polygon covers, clipped to it."""
    if rest.is_empty:
        return []
    x0, y0, x1, y1 = rest.bounds
    xs = np.arange(x0, x1, grid_m)
    ys = np.arange(y0, y1, grid_m)
    gx, gy = np.meshgrid(xs, ys)
    cells = shapely.box(gx.ravel(), gy.ravel(), gx.ravel() + grid_m, gy.ravel() + grid_m)
    rows_i, cols_i = np.divmod(np.arange(len(cells)), len(xs))
    tree = shapely.STRtree(cells)
    hit = tree.query(rest, predicate="intersects")
    clipped = shapely.intersection(cells[hit], rest)
    out = []
    for k, g in zip(hit, clipped, strict=True):
        g = _polygonal(g)
        if g.area >= min_area_m2:
            out.append({"source_id": f"grid:{rows_i[k]}:{cols_i[k]}",
                        "name": f"Grid {rows_i[k]}-{cols_i[k]}", "zone_type": "mixed",
                        "geometry": g})
    return out
