"""Grouping: many entities of one rule at once become one area alert, placed on the map."""

from __future__ import annotations

from typing import Any

from analytics.findings import CITY, Evaluation, Finding
from analytics.places import CityModel


def collapse(rule: Any, ev: Evaluation, open_keys: dict, city: CityModel, places: dict
             ) -> Evaluation:
    """More than ``collapse_above`` entities at once: one city-wide alert, members as scope."""
    city_open = (CITY, CITY) in open_keys
    if not rule.collapse_above or not (len(ev.on) > rule.collapse_above or city_open):
        return ev
    out = Evaluation()
    if ev.on:
        members = tuple(sorted(f"{k}:{e}" for k, e in ev.on))
        since = min(f.since_ms for f in ev.on.values())
        sample = dict(list(ev.on.items())[:5])
        lon, lat, geometry = area_place(rule.id, ev.on, city, places)
        out.on[(CITY, CITY)] = Finding(
            CITY, CITY, since, CITY, lon, lat,
            {"entities": len(ev.on), "sample": {f"{k}:{e}": f.evidence
                                                for (k, e), f in sample.items()}},
            members, geometry)
        # members keep their own (already open) alerts out of the queue: regroup them
        for key in ev.on:
            if key in open_keys:
                out.on[key] = ev.on[key]
    elif city_open:
        out.clear.add((CITY, CITY))
    out.clear |= ev.clear
    return out

def area_place(rule_id: str, on: dict[tuple[str, str], Finding], city: CityModel, places: dict
               ) -> tuple[float | None, float | None, dict | None]:
    """Where a collapsed (many-entity) alert is: its members' outline and a point in it.

    Member zones: the union of their polygons (GeoJSON) and a point inside it (a ring of
    zones around the lake has its centroid in the lake); else the members' points and
    their mean.  Cached per rule and member set: a storm's members stay the same tick
    after tick.
    """
    key = (rule_id, tuple(sorted(on)))
    hit = places.get(key)
    if hit is not None:
        return hit
    import shapely
    from shapely.geometry import mapping, shape

    pts = [(f.lon, f.lat) for f in on.values() if f.lon is not None and f.lat is not None]
    zones = [city.zones[e]["geometry"] for k, e in on
             if k == "zone" and e in city.zones]
    place: tuple[float | None, float | None, dict | None] = (None, None, None)
    if zones:
        area = shapely.union_all([shape(z) for z in zones]).simplify(1e-4)
        inside = area.representative_point()
        place = (inside.x, inside.y, mapping(area))
    elif pts:
        place = (sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts),
                 mapping(shapely.multipoints(pts)))
    if len(places) > 256:
        places.clear()
    places[key] = place
    return place
