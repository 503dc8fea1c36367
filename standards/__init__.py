"""Open standard APIs over the store (issue 17), read only.

:mod:`standards.sta`: OGC SensorThings API 1.1 at ``/sta/v1.1/`` (a Flask blueprint the
dashboards app mounts behind its login guard).  NGSI-LD lives in its own subpackage.  See
docs/standard-apis.md.
"""
