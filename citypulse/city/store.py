"""City models in the database (versioned, one active) and as files.

In: a psycopg connection to a migrated store (migration 100: ``citypulse.city_models``,
``city_active``, ``city_events``).  Out: the active :class:`~citypulse.city.model.City`
for every stage, cached per stored version::

    save(conn, city, source="helsinki.osm.pbf")    # -> version (1, 2, ... per name)
    use(conn, "helsinki")                          # make its latest version active
    active(conn)                                   # the active City (the generated
                                                   # Dishui Lake city when none is set)
    export(city, "city.geojson", "geojson")        # every layer, one file

The name ``dishui`` is the generated city (seed 0): always there, never stored.
"""

from __future__ import annotations

import io
import json
from functools import lru_cache
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import psycopg
import shapely

from citypulse.city.model import (
    GATE_COLUMNS,
    LAYER_NAMES,
    NODE_COLUMNS,
    SEGMENT_COLUMNS,
    WGS84,
    ZONE_COLUMNS,
    City,
    assemble,
)

GENERATED = "dishui"
_INT_COLS = ("ring", "radial", "band", "sector")


class CityError(ValueError):
    """A city model is missing or cannot be used; the message says what to do."""


def _to_bytes(city: City) -> bytes:
    df = city.layers()
    extra = gpd.GeoDataFrame({"layer": ["boundary"]}, geometry=[city.boundary], crs=WGS84)
    df = pd.concat([df, extra], ignore_index=True)
    for col in _INT_COLS:
        if col in df:
            df[col] = df[col].astype("float64")
    for col in df.columns:
        if df[col].dtype == object and col != "geometry":
            df[col] = df[col].map(lambda v: None if v is None or v is pd.NA else str(v))
    buf = io.BytesIO()
    gpd.GeoDataFrame(df, geometry="geometry", crs=WGS84).to_parquet(buf, index=False)
    return buf.getvalue()


def _from_bytes(data: bytes, name: str, version: int, metric_crs: str) -> City:
    df = gpd.read_parquet(io.BytesIO(data))

    def layer(key: str, cols: tuple[str, ...]) -> gpd.GeoDataFrame:
        part = df[df["layer"] == key]
        keep = [c for c in cols if c in part.columns]
        return gpd.GeoDataFrame(part[keep].reset_index(drop=True), geometry="geometry",
                                crs=WGS84)

    segs = layer("road_segment", SEGMENT_COLUMNS)
    segs["lanes"] = segs["lanes"].astype("int64")
    zones = layer("zone", ZONE_COLUMNS)
    depots = {z: d for z, d in zip(zones["zone_id"], zones["depot_node"], strict=True)
              if isinstance(d, str) and d}
    boundary = df.loc[df["layer"] == "boundary", "geometry"].iloc[0]
    return assemble(name=name, version=version, metric_crs=metric_crs, segments=segs,
                    zones=zones, water=layer("lake", ("name", "radius_m", "geometry")),
                    nodes=layer("node", NODE_COLUMNS),
                    gates=layer("gate", GATE_COLUMNS) if (df["layer"] == "gate").any() else None,
                    boundary=boundary, depots=depots)


def save(conn: psycopg.Connection, city: City, source: str, report: dict | None = None,
         activate: bool = False) -> int:
    """Store ``city`` as the next version of its name; returns the version."""
    if city.name == GENERATED:
        raise CityError(f"the name {GENERATED!r} is the generated city; import under another "
                        "name (--name)")
    data = _to_bytes(city)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('citypulse.city_models'))")
        version = conn.execute(
            "SELECT coalesce(max(version), 0) + 1 FROM citypulse.city_models WHERE name = %s",
            (city.name,)).fetchone()[0]
        summary = {**city.summary(), "version": version}
        mid = conn.execute(
            "INSERT INTO citypulse.city_models (name, version, source, metric_crs, summary, "
            "report, layers) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (city.name, version, source, city.metric_crs, json.dumps(summary),
             json.dumps(report or {}, default=str), data)).fetchone()[0]
        conn.execute("INSERT INTO citypulse.city_events (action, name, version, detail) "
                     "VALUES ('import', %s, %s, %s)",
                     (city.name, version, json.dumps({"source": source, "bytes": len(data)})))
        if activate:
            _set_active(conn, mid, city.name, version)
    return version


def _set_active(conn: psycopg.Connection, model_id: int | None, name: str, version: int) -> None:
    conn.execute(
        "INSERT INTO citypulse.city_active (singleton, model_id) VALUES (true, %s) "
        "ON CONFLICT (singleton) DO UPDATE SET model_id = EXCLUDED.model_id, "
        "changed_at = now(), changed_by = current_user", (model_id,))
    conn.execute("INSERT INTO citypulse.city_events (action, name, version) "
                 "VALUES ('use', %s, %s)", (name, version))


def use(conn: psycopg.Connection, name: str, version: int | None = None) -> tuple[str, int]:
    """Make ``name`` (its latest version, or ``version``) the active city."""
    with conn.transaction():
        if name == GENERATED:
            _set_active(conn, None, GENERATED, 0)
            return GENERATED, 0
        row = conn.execute(
            "SELECT id, version FROM citypulse.city_models WHERE name = %s "
            "AND (%s::int IS NULL OR version = %s::int) ORDER BY version DESC LIMIT 1",
            (name, version, version)).fetchone()
        if row is None:
            known = [r[0] for r in conn.execute(
                "SELECT DISTINCT name FROM citypulse.city_models ORDER BY 1")]
            raise CityError(f"no city model {name!r}" + (f" version {version}" if version else "")
                            + f"; known: {', '.join([GENERATED, *known])} "
                            "(import one with `citypulse city import FILE --name NAME`)")
        _set_active(conn, row[0], name, row[1])
        return name, row[1]


def list_models(conn: psycopg.Connection) -> list[dict]:
    """Every stored version (newest first per name) and the generated city, active marked."""
    active_id = active_key(conn)[2]
    rows = conn.execute(
        "SELECT id, name, version, source, imported_at, imported_by, summary "
        "FROM citypulse.city_models ORDER BY name, version DESC").fetchall()
    out = [{"name": GENERATED, "version": 0, "source": "generated", "active": active_id is None}]
    for mid, name, version, source, at, by, summary in rows:
        out.append({"name": name, "version": version, "source": source,
                    "imported_at": at.isoformat(), "imported_by": by,
                    "segments": summary.get("segments"), "zones": summary.get("zones"),
                    "active": mid == active_id})
    return out


def active_key(conn: psycopg.Connection) -> tuple[str, int, int | None]:
    """(name, version, model id) of the active city; ("dishui", 0, None) by default."""
    row = conn.execute(
        "SELECT m.name, m.version, m.id FROM citypulse.city_active a "
        "JOIN citypulse.city_models m ON m.id = a.model_id").fetchone()
    return (row[0], row[1], row[2]) if row else (GENERATED, 0, None)


def active(conn: psycopg.Connection) -> City:
    """The active city model (cached per stored version; one small query when unchanged)."""
    name, version, mid = active_key(conn)
    return load(conn, name, version) if mid is not None else _generated()


def load(conn: psycopg.Connection, name: str, version: int | None = None) -> City:
    """A stored city model by name (latest version unless given); ``dishui`` generates."""
    if name == GENERATED:
        return _generated()
    row = conn.execute(
        "SELECT id, version FROM citypulse.city_models WHERE name = %s "
        "AND (%s::int IS NULL OR version = %s::int) ORDER BY version DESC LIMIT 1",
        (name, version, version)).fetchone()
    if row is None:
        raise CityError(f"no city model {name!r}; see `citypulse city list`")
    return _load_cached(conn, row[0])


_LOADED: dict[tuple[str, int], City] = {}


def _load_cached(conn: psycopg.Connection, model_id: int) -> City:
    key = (conn.info.dbname + ":" + str(conn.info.port), model_id)
    if key not in _LOADED:
        name, version, crs, data = conn.execute(
            "SELECT name, version, metric_crs, layers FROM citypulse.city_models WHERE id = %s",
            (model_id,)).fetchone()
        if len(_LOADED) >= 4:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = _from_bytes(bytes(data), name, version, crs)
    return _LOADED[key]


@lru_cache(maxsize=1)
def _generated() -> City:
    from citypulse.city.dishui import build_city

    return build_city(0)


def model_key(city: City) -> str:
    """``name@version``: what ``sensor_placement.city_model`` records."""
    return f"{city.name}@{city.version}"


def export(city: City, path: str, fmt: str = "geojson") -> int:
    """Write every layer to ``path`` (GeoJSON FeatureCollection or GeoParquet); return features."""
    df = city.layers()
    if fmt == "geoparquet":
        for col in _INT_COLS:
            if col in df:
                df[col] = df[col].astype("float64")
        df.to_parquet(path, index=False)
    elif fmt == "geojson":
        features = []
        for row, geom in zip(df.drop(columns="geometry").to_dict("records"),
                             df.geometry.values, strict=True):
            props = {k: _plain(v) for k, v in row.items() if not _missing(v)}
            features.append({"type": "Feature", "properties": props,
                             "geometry": shapely.geometry.mapping(geom)})
        with open(path, "w", encoding="utf-8") as fh:
            json.dump({"type": "FeatureCollection", "features": features}, fh,
                      separators=(",", ":"))
    else:
        raise ValueError(f"unknown format {fmt!r}; use geojson or geoparquet")
    return len(df)


def _missing(v: Any) -> bool:
    try:
        return v is None or bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v


__all__ = ["CityError", "GENERATED", "LAYER_NAMES", "active", "active_key", "export",
           "list_models", "load", "model_key", "save", "use"]
