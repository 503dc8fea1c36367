"""NGSI-LD (read) over the twin's live state, as FIWARE Smart Data Models entities.

Public entry::

    from standards.ngsild import create_blueprint
    server.register_blueprint(create_blueprint(settings, pool, require_read))

serves ``/ngsi-ld/v1/entities``, ``/entities/{id}``, ``/types``, ``/temporal/entities`` and
the shipped @contexts (see :mod:`standards.ngsild.http`).  Entities: TrafficFlowObserved per
segment, CrowdFlowObserved per zone, Alert per open alert, Device and DeviceModel for the
registry (:mod:`standards.ngsild.entities`); queries: :mod:`standards.ngsild.query`.
"""

from __future__ import annotations


def create_blueprint(settings, pool, require_read, access=None):
    """The NGSI-LD blueprint (see :func:`standards.ngsild.http.create_blueprint`)."""
    from standards.ngsild.http import create_blueprint as _create

    return _create(settings, pool, require_read, access)
