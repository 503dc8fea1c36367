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
