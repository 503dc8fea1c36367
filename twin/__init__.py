"""The geospatial twin: placement of sensors on the city model, flows, state.

The city model itself (lake, segments, zones, graph) is a foundation every stage may
import: :mod:`citypulse.city` (``build_city``, ``City``), re-exported here for callers of
the twin.
"""

from typing import Any

__all__ = ["City", "build_city"]


def __getattr__(name: str) -> Any:
    # lazy, so `citypulse --help` does not pay for importing geopandas
    if name in __all__:
        import citypulse.city

        return getattr(citypulse.city, name)
    raise AttributeError(name)
