"""The city model the simulator places sensors on: the shared ``citypulse.city``.

In: a seed (0, the default, is the canonical city: the one the map and the twin use).
Out: the shared ``City`` (``segments``, ``zones``, ``lake``, ``graph``, ``gates``, ``depots``,
``shortest_path``), plus small helpers for metres near the lake.  The simulator imports no
downstream stage.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np

LAKE_LON, LAKE_LAT = 121.929, 30.899
M_PER_DEG_LAT = 111_320.0
M_PER_DEG_LON = M_PER_DEG_LAT * math.cos(math.radians(LAKE_LAT))


def meters(dlon: Any, dlat: Any) -> Any:
    """Distance in metres of a (lon, lat) difference near the lake (equirectangular)."""
    return np.hypot(np.asarray(dlon) * M_PER_DEG_LON, np.asarray(dlat) * M_PER_DEG_LAT)


@lru_cache(maxsize=4)
def load_city(seed: int = 0) -> Any:
    """The shared city model for ``seed`` (cached)."""
    from citypulse.city import build_city

    return build_city(seed)


def lake_geometry(city: Any) -> Any:
    """The lake as one shapely geometry (the twin keeps it as a one-row GeoDataFrame)."""
    lake = city.lake
    return lake.geometry.union_all() if hasattr(lake, "geometry") else lake


def city_from_spec(spec: str | None, database_url: str | None = None) -> Any:
    """The city a fleet lives on, by spec.

    ``dishui`` (default, generated), ``active`` (the database's active city), ``NAME`` or
    ``NAME@VERSION`` (stored), or a city file to import.
    """
    from pathlib import Path

    if spec in (None, "", "dishui", "dishui@0"):
        return load_city(0)
    if Path(spec).is_file():
        return _imported(str(Path(spec).resolve()))
    return _stored(spec, database_url)


@lru_cache(maxsize=2)
def _imported(path: str) -> Any:
    from citypulse.city.importer import import_city

    return import_city(path)[0]


def _stored(spec: str, database_url: str | None) -> Any:
    from citypulse import schema
    from citypulse.city import store
    from citypulse.settings import load_settings

    with schema.connect(load_settings(database_url=database_url), autocommit=True) as conn:
        if spec == "active":
            return store.active(conn)
        name, _, version = spec.partition("@")
        return store.load(conn, name, int(version) if version else None)


def city_spec(city: Any, spec: str | None) -> str:
    """What a deployment records in its ``city`` column to find its city again."""
    from pathlib import Path

    if spec and Path(spec).is_file():
        return str(Path(spec).resolve())
    return f"{getattr(city, 'name', 'dishui')}@{getattr(city, 'version', 0)}"


def city_of(dep: Any) -> Any:
    """The city a deployment frame was placed on (its ``city`` column; else the default)."""
    if dep is not None and "city" in getattr(dep, "columns", ()) and dep.height:
        return city_from_spec(str(dep["city"][0]))
    return load_city(0)
