"""Open standard APIs over the store (issue 17): SensorThings API 1.1 and NGSI-LD, read only.

:mod:`standards.ngsild`: NGSI-LD at ``/ngsi-ld/v1/`` (Smart Data Models entities from the
twin, alerts and registry), mounted by the web app.  :mod:`standards.sta`: so far the
SensorThings ``$filter``/``$orderby`` parser (see docs/standard-apis.md).
"""
