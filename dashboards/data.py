"""The dashboards' one adapter point onto the store, the twin and analytics.

In: a psycopg connection (autocommit) and the settings.  Out: plain, JSON-ready dicts and
lists that pages and :mod:`dashboards.figures` use.  The sources, one module per concern
under :mod:`dashboards.sources`: ``colours`` (bands from analytics' rules), ``citymap``
(the twin's city model, sensor positions), ``state`` (segments, zones, OD, the map's
state), ``alerts`` (analytics' lifecycle, audit), ``kpis`` (wall, traffic, ingest health)
and ``metrics`` (the collectors' Prometheus metrics).  This module gathers their names.

Nothing here raises on a missing optional part: an absent table or API gives empty data.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from dashboards.sources.alerts import (
    ALERT_ACTIONS,
    alert_action,
    alert_evidence,
    alerts_open_at,
    audit,
    get_alert,
    list_alerts,
)
from dashboards.sources.citymap import (
    CENTRE,
    CITY_CHECK_S,
    city_model,
    follow_city,
    offline_positions,
    sensor_positions,
    unplaceable,
    zone_centroids,
)
from dashboards.sources.colours import (
    SEVERITIES,
    Band,
    band_index,
    congestion_bands,
    density_rgba,
    severity_css,
    severity_rgb,
    ui_thresholds,
)
from dashboards.sources.kpis import (
    congestion_by_hour_ring,
    history_range,
    ingest_health,
    kpis,
    segment_series,
    worst_segments,
)
from dashboards.sources.metrics import metrics_urls, parse_metrics, rates, scrape
from dashboards.sources.state import STATE_WINDOW, map_state, od_flows, segment_state, zone_state

LOCAL_TZ = ZoneInfo("Asia/Shanghai")

__all__ = [
    "ALERT_ACTIONS", "CENTRE", "CITY_CHECK_S", "LOCAL_TZ", "SEVERITIES", "STATE_WINDOW", "Band", "alert_action",
    "alert_evidence", "alerts_open_at", "audit", "band_index", "city_model",
    "congestion_bands", "congestion_by_hour_ring", "density_rgba", "get_alert",
    "history_range", "ingest_health", "kpis", "list_alerts", "map_state", "metrics_urls",
    "od_flows", "offline_positions", "parse_metrics", "rates", "scrape", "segment_series",
    "segment_state", "sensor_positions", "severity_css", "severity_rgb", "ui_thresholds",
    "worst_segments", "zone_centroids", "zone_state", "follow_city", "unplaceable",
]
