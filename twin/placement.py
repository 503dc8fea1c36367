"""Placement of sensors on the city model, as the twin runs it.

The rule and the table writer live in the foundation (:mod:`citypulse.city.placement`) so
that ``registry load`` (ingest) and analytics use the very same placement; the twin calls
:func:`place_sensors` every pass (new, moved, or placed on another city model).
"""

from citypulse.city.placement import PlacementReport, place, place_sensors, sync_city

__all__ = ["PlacementReport", "place", "place_sensors", "sync_city"]
