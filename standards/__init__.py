"""Open standard APIs over the store (issue 17), read only.

:mod:`standards.sta`: OGC SensorThings API 1.1 at ``/sta/v1.1/``; :mod:`standards.ngsild`:
NGSI-LD at ``/ngsi-ld/v1/`` (Smart Data Models entities from the twin, alerts and registry).
Both are Flask blueprints the dashboards app mounts behind its login guard.  See
docs/standard-apis.md.
"""
