"""analytics: traffic and emergency alerts from the twin's state and the freshest readings.

Public API (what dashboards and scripts call; every function takes an open psycopg
connection and runs its own transaction)::

    import analytics
    analytics.list_alerts(conn, open_only=True)            -> list[Alert]  (frozen records)
    analytics.alerts_open_at(conn, at)                      -> list[Alert] open at time ``at``
    analytics.get_alert(conn, alert_id)                     -> Alert | None
    analytics.acknowledge(conn, alert_id, by="ana", note="") -> Alert  (open -> acknowledged)
    analytics.escalate(conn, alert_id, by="ana", note="")    -> Alert  (level + 1, critical)
    analytics.resolve(conn, alert_id, by="ana", note="")     -> Alert  (-> resolved)
    analytics.events(conn, alert_id)                        -> audit trail (list of dicts)
    analytics.evidence(conn, alert_id, minutes=15)          -> dict: alert, trail, readings
    analytics.ui_thresholds()                               -> colour bands and limits

``acknowledge``/``escalate``/``resolve`` raise :class:`AlertError` when the transition does not
apply (unknown id, already resolved, no ``by``).  Thresholds live in ``analytics/rules.yaml``
(or ``CITYPULSE_RULES_FILE``); dashboards read them through :func:`ui_thresholds`, never
hard-code them.  The worker is ``citypulse alerts run`` (:mod:`analytics.worker`), the rules
engine :mod:`analytics.engine`, delivery (MQTT + webhooks) :mod:`analytics.delivery`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from analytics.lifecycle import (
    Alert,
    AlertError,
    acknowledge,
    alerts_open_at,
    escalate,
    events,
    get_alert,
    list_alerts,
    resolve,
)
from analytics.rules import RulesError, RuleSet, load_rules

__all__ = [
    "Alert", "AlertError", "RuleSet", "RulesError", "acknowledge", "alerts_open_at", "escalate",
    "events", "evidence", "get_alert", "list_alerts", "load_rules", "resolve", "ui_thresholds",
]

_RULE_KINDS = {"crowd": ["people"], "flood": ["water"], "congestion": ["traffic"]}


def ui_thresholds(rules: RuleSet | None = None) -> dict[str, Any]:
    """Colour bands and limits for the UI, from the rules (default: the configured file).

    Returns ``{"congestion_bands": [(lo, hi, "free"|"slow"|"congested"), ...],
    "density_limits": {"default": x, zone_type: x, ..., zone_id: x} (persons per 1,000 m2:
    the catalogue's per zone type, the crowd rule's per zone id),
    "density_warn_ratio": r, "density_method": "per_counter"|"zone",
    "severity_colours": {...}, "escalate_after_s": s}``.
    """
    from citypulse.city.model import ZONE_TYPES, density_limit

    if rules is None:
        from citypulse.settings import load_settings

        rules = load_rules(load_settings().rules_file)
    out: dict[str, Any] = {
        "severity_colours": {"info": [66, 135, 245], "warning": [245, 166, 35],
                             "critical": [220, 38, 38]},
        "escalate_after_s": rules.escalate_after_s,
        "congestion_bands": [(0.0, 0.45, "free"), (0.45, 0.6, "slow"), (0.6, 1.0, "congested")],
        "density_limits": {},  # from the crowd rule (rules.yaml), none without one
        "density_warn_ratio": 0.85,
    }
    for r in rules.active():
        if r.type == "congestion":
            out["congestion_bands"] = [(0.0, r.clear_below, "free"),
                                       (r.clear_below, r.index_above, "slow"),
                                       (r.index_above, 1.0, "congested")]
        elif r.type == "crowd":
            out["density_limits"] = {"default": density_limit(None),
                                     **{t: v[1] for t, v in ZONE_TYPES.items()}, **r.limits}
            out["density_warn_ratio"] = r.clear_ratio
            out["density_method"] = r.density
    return out


def evidence(conn: psycopg.Connection, alert_id: int, minutes: float = 15.0,
             max_sensors: int = 20) -> dict[str, Any]:
    """The alert, its audit trail and the readings behind it (``minutes`` before it started).

    ``readings`` is a list of ``{time, sensor_id, kind, metric, value}`` (the documented
    ``citypulse.readings`` view) for the sensors of the alert: the sensor itself, its
    scope, the traffic sensors of a segment's queue, or the relevant sensors of a zone.
    """
    alert = get_alert(conn, alert_id)
    if alert is None:
        raise AlertError(f"no alert {alert_id}")
    ids: list[str] = []
    if alert.entity_kind == "sensor":
        ids.append(alert.entity_id)
    ev_sensors = alert.evidence.get("sensors")
    if isinstance(ev_sensors, list):
        ids.extend(str(s) for s in ev_sensors)
    with conn.cursor() as cur:
        if alert.entity_kind == "segment":
            cur.execute("SELECT sensor_id FROM citypulse.sensors WHERE kind = 'traffic' AND "
                        "props->>'segment_id' = ANY(%s) LIMIT %s",
                        ([alert.entity_id, *map(str, alert.scope)], max_sensors))
            ids.extend(r[0] for r in cur.fetchall())
        elif alert.entity_kind == "zone":
            kinds = _RULE_KINDS.get(alert.rule.split("_")[0], ["people", "water"])
            cur.execute("SELECT sensor_id FROM citypulse.sensors WHERE kind = ANY(%s) AND "
                        "props->>'zone_id' = %s LIMIT %s", (kinds, alert.entity_id, max_sensors))
            ids.extend(r[0] for r in cur.fetchall())
        elif alert.entity_kind == "gateway":
            ids.extend(str(s) for s in alert.scope[:max_sensors])
    ids = list(dict.fromkeys(ids))[:max_sensors]
    end = alert.resolved_at or datetime.now(UTC)
    start = alert.started_at - timedelta(minutes=minutes)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT r.time, s.sensor_id, s.kind, m.metric, x.value FROM citypulse.raw r "
            "JOIN citypulse.sensors s ON s.id = r.sensor "
            "CROSS JOIN LATERAL (VALUES (0, r.v0), (1, r.v1), (2, r.v2), (3, r.v3), "
            "(4, r.v4), (5, r.v5), (6, r.v6), (7, r.v7)) AS x(slot, value) "
            "JOIN citypulse.metric_catalogue m ON m.kind = s.kind AND m.slot = x.slot "
            "WHERE s.sensor_id = ANY(%s) AND r.time >= %s AND r.time <= %s "
            "AND x.value IS NOT NULL AND m.metric NOT IN ('battery_pct', 'rssi_dbm') "
            "ORDER BY r.time LIMIT 20000", (ids, start, end))
        readings = cur.fetchall()
    return {"alert": alert.to_json(), "trail": events(conn, alert_id), "sensors": ids,
            "readings": readings}
