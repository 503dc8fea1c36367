"""Representations of entities: normalized NGSI-LD, keyValues, GeoJSON; the served @contexts.

In: keyValues entities (:mod:`standards.ngsild.entities`).  Out: JSON-ready documents:

- :func:`normalized`: every attribute a ``Property`` (``value``; date-times as
  ``{"@type": "DateTime", "@value": ...}``; measurements with ``observedAt``), ``location`` a
  ``GeoProperty`` and ``ref*`` attributes ``Relationship`` s (``object``);
- :func:`project`: only the ``attrs`` asked for (plus id and type);
- :func:`feature`: a GeoJSON Feature (``Accept: application/geo+json``).

The @context documents are shipped in ``data/contexts`` (ETSI core context and the Smart
Data Models contexts of the three subjects) and served by the API itself under
``/ngsi-ld/v1/contexts/``: :data:`CONTEXT_FILES`; :func:`citypulse_context` is the one a
response links to (the subjects' contexts, then the core context, as ETSI asks).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
CORE = "ngsi-ld-core-context-v1.7.jsonld"
CONTEXT_FILES = (CORE, "sdm-transportation.jsonld", "sdm-alert.jsonld", "sdm-device.jsonld")
CITYPULSE_CONTEXT = "citypulse.jsonld"
DATETIME_ATTRS = frozenset({"dateObservedFrom", "dateObservedTo", "dateIssued", "validFrom",
                            "validTo", "dateInstalled", "dateLastStateChange",
                            "dateAcknowledged"})
MEASURED = frozenset({"intensity", "vehicleFlowPerHour", "averageVehicleSpeed", "occupancy",
                      "congestionIndex", "congested", "volumeCapacityRatio", "sensorCount",
                      "peopleCount", "peopleCountTowards", "peopleCountAway",
                      "densityPer1000m2", "densityRatio", "vehicles", "trucks"})
GEO_ATTRS = frozenset({"location"})


@cache
def context_file(name: str) -> bytes | None:
    """The bytes of a shipped @context document, or None for an unknown name."""
    if name not in CONTEXT_FILES:
        return None
    return (DATA / "contexts" / name).read_bytes()


def citypulse_context(base: str) -> dict:
    """The @context document responses link to (``base``: the API's contexts URL)."""
    return {"@context": [f"{base}/{n}" for n in CONTEXT_FILES[1:]] + [f"{base}/{CORE}"]}


@cache
def schema(entity_type: str) -> dict:
    """The shipped Smart Data Models JSON Schema of ``entity_type``."""
    return json.loads((DATA / "schemas" / f"{entity_type}.json").read_text())


def project(entity: dict, attrs: list[str] | None) -> dict:
    """``entity`` with only ``id``, ``type`` and the ``attrs`` asked for (None: all)."""
    if attrs is None:
        return entity
    keep = set(attrs) | {"id", "type", "@context"}
    return {k: v for k, v in entity.items() if k in keep}


def _attr(name: str, value: object, observed: str | None) -> dict:
    if name in GEO_ATTRS:
        return {"type": "GeoProperty", "value": value}
    if name.startswith("ref") or name == "alertSource":
        return {"type": "Relationship", "object": value}
    if name in DATETIME_ATTRS:
        return {"type": "Property", "value": {"@type": "DateTime", "@value": value}}
    out = {"type": "Property", "value": value}
    if observed and name in MEASURED:
        out["observedAt"] = observed
    return out


def normalized(entity: dict) -> dict:
    """The normalized NGSI-LD form of a keyValues entity."""
    observed = entity.get("dateObservedTo")
    out = {"id": entity["id"], "type": entity["type"]}
    for k, v in entity.items():
        if k not in ("id", "type", "@context"):
            out[k] = _attr(k, v, observed)
    return out


def feature(entity: dict, key_values: bool, geoproperty: str = "location") -> dict:
    """A GeoJSON Feature of ``entity`` (properties: keyValues or normalized attributes)."""
    body = entity if key_values else normalized(entity)
    props = {k: v for k, v in body.items() if k not in ("id",)}
    geom = entity.get(geoproperty)
    return {"id": entity["id"], "type": "Feature", "geometry": geom, "properties": props}
