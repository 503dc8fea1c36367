"""Import a real city from OpenStreetMap ``.osm.pbf``, GeoJSON, GeoPackage or GeoParquet.

Readers: pyrosm for ``.osm.pbf``, pyogrio/geopandas for the rest; the result is a
:class:`~citypulse.city.model.City`.

In: a file, optional layer names (``{"roads": ..., "zones": ..., "water": ...}``) and an
optional mapping (YAML, see ``docs/city.md``) naming the fields to read.  Out:
``(city, report)``; the report lists what was repaired and what was dropped, with the
layer and feature.  Bad input raises :class:`CityImportError` naming the file, the layer
and the feature (no roads, no CRS, a mapping naming an absent field, an unreadable file)::

    city, report = import_city("helsinki.osm.pbf", name="helsinki")

Roads become directed segments cut at junctions (:mod:`citypulse.city.roads`); zones come
from polygons: land use, ``place=*`` areas and administrative districts of an OSM extract
(the smaller wins where they overlap), the zone layer of a GIS file, with a grid where none
are given (:mod:`citypulse.city.zones`); water polygons are kept as the ``lake`` (water)
layer.  Files written by ``citypulse twin export`` re-import as they are
(their segments are already directed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import yaml

from citypulse.city.model import WGS84, ZONE_TYPES, City, assemble, utm_crs
from citypulse.city.roads import DRIVING, directed_segments
from citypulse.city.zones import tile, zone_type_of

ROLES = ("roads", "zones", "water")
ROAD_FIELDS = {"class": ("highway", "road_class", "fclass", "class", "type"),
               "lanes": ("lanes",), "maxspeed": ("maxspeed", "free_flow_kmh", "speed"),
               "oneway": ("oneway",), "name": ("name", "road")}
ZONE_FIELDS = {"type": ("zone_type", "landuse", "leisure", "place", "type", "fclass"),
               "name": ("name",), "id": ("zone_id", "id", "osm_id")}
WATER_VALUES = ("water", "lake", "basin", "reservoir", "riverbank", "bay", "pond", "sea", "ocean")
_NAME_HINTS = {"roads": ("road", "street", "highway", "segment", "line"),
               "zones": ("zone", "district", "landuse", "area", "neighbourhood", "block"),
               "water": ("water", "lake", "river", "sea")}


class CityImportError(ValueError):
    """A city file cannot be imported; the message names the file, layer and feature."""


def import_city(path: str | Path, name: str | None = None, layers: dict[str, str] | None = None,
                mapping: str | Path | dict | None = None, grid_m: float | None = None
                ) -> tuple[City, dict]:
    """Read ``path`` into a City; see the module doc."""
    path = Path(path)
    if not path.exists():
        raise CityImportError(f"{path}: no such file")
    name = name or path.name.split(".")[0].lower()
    spec = _mapping(mapping)
    for role, lname in (layers or {}).items():
        if role not in ROLES:
            raise CityImportError(f"--layer {role}={lname}: use roads=, zones= or water=")
        spec.setdefault(role, {})["layer"] = lname
    report: dict[str, Any] = {"source": path.name, "dropped": [], "repaired": 0}
    if path.name.endswith(".osm.pbf") or path.suffix == ".pbf":
        roads, zones, water = _read_osm(path, report)
    else:
        roads, zones, water = _read_gis(path, spec, report)
    return _build(name, roads, zones, water, spec, report, grid_m)


def _mapping(mapping: str | Path | dict | None) -> dict:
    if mapping is None:
        return {}
    if isinstance(mapping, dict):
        return {k: dict(v or {}) for k, v in mapping.items()}
    src = Path(mapping)
    try:
        doc = yaml.safe_load(src.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CityImportError(f"{src}: {exc}") from None
    if not isinstance(doc, dict) or set(doc) - set(ROLES):
        raise CityImportError(f"{src}: top-level keys must be {', '.join(ROLES)} "
                              f"(got {', '.join(map(str, doc)) if isinstance(doc, dict) else doc!r})")
    return {k: dict(v or {}) for k, v in doc.items()}


def _read_osm(path: Path, report: dict) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame | None,
                                                  gpd.GeoDataFrame | None]:
    import pyrosm

    try:
        osm = pyrosm.OSM(str(path))
        roads = osm.get_network(network_type="driving")
    except Exception as exc:  # noqa: BLE001 - pyrosm raises many kinds on bad files
        raise CityImportError(f"{path}: not a readable OpenStreetMap extract ({exc})") from None
    if roads is None or not len(roads):
        raise CityImportError(f"{path}: layer 'ways (highway)': no drivable roads in the file")
    roads = roads.rename(columns={"highway": "road_class"})
    roads["feature"] = "way " + roads["id"].astype(str)
    parts = []
    landuse = osm.get_landuse()
    if landuse is not None and len(landuse):
        parts.append(pd.DataFrame({"value": landuse["landuse"], "name": landuse.get("name"),
                                   "feature": "landuse " + landuse["id"].astype(str),
                                   "geometry": landuse.geometry}))
    natural = osm.get_natural()
    if natural is not None and len(natural):
        nat = natural[natural["natural"].isin(WATER_VALUES + ("wood", "scrub", "heath",
                                                               "wetland"))]
        parts.append(pd.DataFrame({"value": nat["natural"], "name": nat.get("name"),
                                   "feature": "natural " + nat["id"].astype(str),
                                   "geometry": nat.geometry}))
    places = _osm_places(osm)
    if places is not None:
        parts.append(places)
    districts = _osm_districts(osm)
    if districts is not None:
        parts.append(districts)
    poly = (gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), geometry="geometry", crs=WGS84)
            if parts else None)
    if poly is not None:
        poly = poly[poly.geometry.geom_type.isin(["Polygon", "MultiPolygon"])]
        is_water = poly["value"].isin(WATER_VALUES).to_numpy()
        water, zones = poly[is_water], poly[~is_water]
    else:
        water = zones = None
    report["layers"] = {"roads": "ways with highway=*",
                        "zones": "landuse/natural polygons, place=* polygons"
                        + (", admin boundaries (level >= 9)" if districts is not None else "")
                        + " + grid",
                        "water": "natural=water|bay, landuse=basin|reservoir"}
    return roads, zones, water


def _osm_places(osm) -> pd.DataFrame | None:
    """``place=*`` areas (squares, city blocks, quarters, neighbourhoods, suburbs, islands)."""
    try:
        p = osm.get_data_by_custom_criteria(custom_filter={"place": True}, osm_keys_to_keep="place",
                                            keep_nodes=False, tags_as_columns=["place", "name"])
    except Exception:  # noqa: BLE001 - an extract without place areas
        return None
    if p is None or not len(p) or "place" not in p:
        return None
    return pd.DataFrame({"value": p["place"], "name": p.get("name"),
                         "feature": "place " + p["id"].astype(str), "geometry": p.geometry})


def _osm_districts(osm) -> pd.DataFrame | None:
    """``boundary=administrative`` districts (admin_level >= 9), typed ``mixed``."""
    try:
        b = osm.get_boundaries(boundary_type="administrative")
    except Exception:  # noqa: BLE001 - an extract without boundaries
        return None
    if b is None or not len(b) or "admin_level" not in b:
        return None
    lvl = pd.to_numeric(b["admin_level"], errors="coerce")
    b = b[(lvl >= 9).to_numpy()]
    if not len(b):
        return None
    return pd.DataFrame({"value": "district", "name": b.get("name"),
                         "feature": "relation " + b["id"].astype(str), "geometry": b.geometry})


def _read_gis(path: Path, spec: dict, report: dict):
    import pyogrio

    if path.suffix.lower() in (".parquet", ".geoparquet"):
        frames = {path.stem: _read_parquet(path)}
    else:
        try:
            listed = [str(x[0]) for x in pyogrio.list_layers(str(path))]
        except Exception as exc:  # noqa: BLE001 - pyogrio raises DataSourceError and others
            raise CityImportError(f"{path}: not a readable GeoJSON/GeoPackage/GeoParquet "
                                  f"file ({exc})") from None
        frames = {}
        for lname in listed:
            try:
                frames[lname] = gpd.read_file(path, layer=lname, engine="pyogrio")
            except Exception as exc:  # noqa: BLE001
                raise CityImportError(f"{path}: layer {lname!r}: unreadable ({exc})") from None
    for lname, df in frames.items():
        if df.crs is None:
            raise CityImportError(f"{path}: layer {lname!r} has no CRS (unknown coordinate "
                                  "system); write the file with its CRS, e.g. EPSG:4326")
    chosen = {}
    for role in ROLES:
        want = spec.get(role, {}).get("layer")
        if want is not None:
            if want not in frames:
                raise CityImportError(f"{path}: no layer {want!r} (layers: "
                                      f"{', '.join(frames)}); fix --layer {role}= or the mapping")
            chosen[role] = frames[want]
    if len(frames) == 1 and not chosen:
        df = next(iter(frames.values()))
        layer_col = df["layer"] if "layer" in df else pd.Series([""] * len(df), index=df.index)
        gt = df.geometry.geom_type
        lines = gt.isin(["LineString", "MultiLineString"]) & layer_col.isin(["", "road_segment",
                                                                               "road"])
        polys = gt.isin(["Polygon", "MultiPolygon"])
        wv = _first(df, ZONE_FIELDS["type"])
        is_water = polys & ((layer_col == "lake") | (df[wv].isin(WATER_VALUES) if wv else False))
        chosen = {"roads": df[lines], "zones": df[polys & ~is_water & (layer_col != "lake")],
                  "water": df[is_water]}
    else:
        for role in ROLES:
            if role not in chosen:
                hit = [n for n in frames if any(h in n.lower() for h in _NAME_HINTS[role])]
                if hit:
                    chosen[role] = frames[hit[0]]
    if "roads" not in chosen or not len(chosen["roads"]):
        raise CityImportError(f"{path}: no roads: no line features (layers: {', '.join(frames)}); "
                              "name the roads layer with --layer roads=NAME")
    report["layers"] = {r: str(len(chosen[r])) + " features" for r in chosen}
    roads = _road_fields(path, chosen["roads"], spec.get("roads", {}))
    zones = (_zone_fields(path, chosen["zones"], spec.get("zones", {}))
             if "zones" in chosen and len(chosen["zones"]) else None)
    water = chosen.get("water")
    if water is not None:
        water = gpd.GeoDataFrame({"value": "water", "name": water.get("name"),
                                  "feature": "feature " + water.index.astype(str)},
                                 geometry=water.geometry.values, crs=water.crs)
    return roads, zones, water


def _read_parquet(path: Path) -> gpd.GeoDataFrame:
    try:
        return gpd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001
        raise CityImportError(f"{path}: not a readable GeoParquet file ({exc})") from None


def _first(df: pd.DataFrame, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in df.columns), None)


def _field(path: Path, df: pd.DataFrame, role: str, key: str, spec: dict,
           defaults: tuple[str, ...]) -> str | None:
    if key in spec:
        if spec[key] not in df.columns:
            raise CityImportError(
                f"{path}: mapping {role}.{key} names field {spec[key]!r}, absent from the "
                f"{role} layer (fields: {', '.join(c for c in df.columns if c != 'geometry')})")
        return spec[key]
    return _first(df, defaults)


def _road_fields(path: Path, df: gpd.GeoDataFrame, spec: dict) -> gpd.GeoDataFrame:
    out = gpd.GeoDataFrame({"feature": "feature " + df.index.astype(str)},
                           geometry=df.geometry.values, crs=df.crs)
    if {"segment_id", "from_node", "to_node"} <= set(df.columns):  # a twin export
        for c in ("segment_id", "from_node", "to_node", "road", "road_class", "direction",
                  "lanes", "free_flow_kmh", "capacity_veh_h"):
            out[c] = df[c].to_numpy()
        out.attrs["directed"] = True
        return out
    for key, defaults in ROAD_FIELDS.items():
        col = _field(path, df, "roads", key, spec, defaults)
        out["road_class" if key == "class" else key] = df[col].to_numpy() if col else None
    return out


def _zone_fields(path: Path, df: gpd.GeoDataFrame, spec: dict) -> gpd.GeoDataFrame:
    cols = {k: _field(path, df, "zones", k, spec, d) for k, d in ZONE_FIELDS.items()}
    out = gpd.GeoDataFrame({"value": df[cols["type"]].to_numpy() if cols["type"] else "mixed",
                            "name": df[cols["name"]].to_numpy() if cols["name"] else None,
                            "feature": ("feature " + df[cols["id"]].astype(str)) if cols["id"]
                            else "feature " + df.index.astype(str)},
                           geometry=df.geometry.values, crs=df.crs)
    out.attrs["types"] = spec.get("types") or {}
    return out


def _build(name: str, roads: gpd.GeoDataFrame, zones: gpd.GeoDataFrame | None,
           water: gpd.GeoDataFrame | None, spec: dict, report: dict,
           grid_m: float | None) -> tuple[City, dict]:
    x0, y0, x1, y1 = roads.to_crs(WGS84).total_bounds
    if not np.isfinite([x0, y0, x1, y1]).all():
        raise CityImportError(f"{report['source']}: layer roads: no usable geometry")
    crs = utm_crs((x0 + x1) / 2, (y0 + y1) / 2)
    roads_m = roads.to_crs(crs)
    gt = roads_m.geometry.geom_type
    bad = ~gt.isin(["LineString", "MultiLineString"]) | roads_m.geometry.is_empty
    for f in roads_m.loc[bad, "feature"]:
        report["dropped"].append({"layer": "roads", "feature": f, "reason": "not a line"})
    roads_m = roads_m[~bad].explode(index_parts=False)
    if roads.attrs.get("directed"):
        segs = roads_m.reset_index(drop=True)
        segs["length_m"] = segs.geometry.length
        for c in ("ring", "radial"):
            segs[c] = pd.NA
        ends = pd.concat([
            pd.DataFrame({"node_id": segs["from_node"], "geometry": shapely.get_point(
                segs.geometry.values, 0)}),
            pd.DataFrame({"node_id": segs["to_node"], "geometry": shapely.get_point(
                segs.geometry.values, -1)})]).drop_duplicates("node_id")
        nodes = gpd.GeoDataFrame(ends.assign(kind="junction"), geometry="geometry", crs=crs)
    else:
        classes = spec.get("roads", {}).get("classes")
        if classes is None and "class" not in spec.get("roads", {}):
            keep = roads_m["road_class"].isna() | roads_m["road_class"].isin(DRIVING)
            roads_m = roads_m[keep.to_numpy()]
        elif classes is not None:
            roads_m = roads_m[roads_m["road_class"].isin(classes).to_numpy()]
        if not len(roads_m):
            raise CityImportError(f"{report['source']}: layer roads: no drivable road lines")
        segs, nodes = directed_segments(roads_m)
    outline = shapely.convex_hull(shapely.union_all(segs.geometry.values)).buffer(150.0)
    cand = []
    for df, default in ((zones, "mixed"), (water, "lake")):
        if df is None or not len(df):
            continue
        df = df.to_crs(crs)
        invalid = ~df.geometry.is_valid
        report["repaired"] += int(invalid.sum())
        ztype = (np.full(len(df), "lake", dtype=object) if default == "lake"
                 else zone_type_of(df["value"], df.attrs.get("types")))
        unknown = ~np.isin(ztype, list(ZONE_TYPES))
        if unknown.any():
            raise CityImportError(f"{report['source']}: zones: unknown zone type(s) "
                                  f"{sorted(set(ztype[unknown]))}; use one of "
                                  f"{', '.join(ZONE_TYPES)} in the mapping's zones.types")
        cand.append(gpd.GeoDataFrame({"source_id": df["feature"].to_numpy(),
                                      "name": df["name"].to_numpy() if "name" in df else None,
                                      "zone_type": ztype}, geometry=df.geometry.values, crs=crs))
    cand_df = (gpd.GeoDataFrame(pd.concat(cand, ignore_index=True), geometry="geometry", crs=crs)
               if cand else gpd.GeoDataFrame({"source_id": [], "name": [], "zone_type": []},
                                             geometry=[], crs=crs))
    cand_df = cand_df[cand_df.geometry.geom_type.isin(["Polygon", "MultiPolygon"])]
    zspec = spec.get("zones", {})
    tiles, dropped = tile(cand_df, outline, grid_m=float(grid_m or zspec.get("grid_m", 500.0)),
                          min_area_m2=float(zspec.get("min_area_m2", 2000.0)))
    report["dropped"] += [{"layer": "zones", "feature": d["source_id"], "reason": d["reason"]}
                          for d in dropped]
    ids = tiles["source_id"].astype(str).str.replace(" ", ":", regex=False)
    tiles["zone_id"] = "Z-" + ids
    tiles["name"] = tiles["name"].where(tiles["name"].notna() & (tiles["name"] != ""),
                                        tiles["zone_type"] + " " + ids)
    water_m = tiles[tiles["zone_type"] == "lake"]
    city = assemble(name=name, metric_crs=crs, segments=segs.to_crs(WGS84),
                    zones=tiles[["zone_id", "name", "zone_type", "geometry"]].to_crs(WGS84),
                    water=gpd.GeoDataFrame({"name": water_m["name"].to_numpy()},
                                           geometry=water_m.geometry.values,
                                           crs=crs).to_crs(WGS84),
                    nodes=nodes.to_crs(WGS84), boundary=gpd.GeoSeries(
                        [outline], crs=crs).to_crs(WGS84).iloc[0])
    report["counts"] = city.summary()
    report["dropped_total"] = len(report["dropped"])
    report["dropped"] = report["dropped"][:50]
    return city, report
