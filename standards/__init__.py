"""Open standard APIs over the store (issue 17): SensorThings API 1.1 and NGSI-LD, read only.

Status: only the SensorThings query-language parser (:mod:`standards.sta.odata`) exists so
far; the HTTP blueprints are not built yet (see docs/standard-apis.md).
"""
