"""control: remote control of the city's actuators, safely and provably.

Public API (each takes an autocommit psycopg connection and the settings; the caller is
``by``/``role``)::

    from control import api
    api.request(conn, settings, "pmp-000001", "start", {"flow_m3_h": 800},
                by="ana", role="operator", alert_id=42)         -> command record (dict)
    api.fleet(conn, settings, "pump", "start", {"alert": 42}, by=..., role=...)
                                                                -> {"fleet_id", "devices", ...}
    api.approve(conn, settings, command_or_fleet_id, by="bo", role="operator")
    api.reject(...), api.cancel(...)
    records.get(conn, id), records.listing(conn, ...)         -> records with audit trail

A request is checked (role, method and params against :mod:`citypulse.actuators`, the
precondition on the latest telemetry), persisted, and then ``queued``, ``pending_approval``
(high risk: a second operator approves) or ``rejected``.  The worker
(:mod:`control.worker`, ``citypulse commands run``) sends and tracks it.  Targets come from
the twin's placement (:mod:`control.targets`), the safety rules from :mod:`control.policy`.
"""
