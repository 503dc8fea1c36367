"""The /ingest page's health figures, from a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from analytics import lifecycle
from dashboards.data import ingest_health


def _gateway_alert(db, gw: str) -> lifecycle.Alert:
    return lifecycle.open_alert(db, lifecycle.NewAlert(
        rule="sensor_offline", entity_kind="gateway", entity_id=gw, severity="warning",
        title=f"offline: gateway {gw}", started_at=datetime.now(UTC), zone_id="Z2-01",
        lon=None, lat=None, geometry=None, scope=(), evidence={}))


def test_gateways_offline_are_the_open_gateway_alerts(db):
    since = datetime.now(UTC) - timedelta(minutes=5)
    assert ingest_health(db, since)["gateways_offline"] == 0
    a = _gateway_alert(db, "gw-1")
    _gateway_alert(db, "gw-2")
    assert ingest_health(db, since)["gateways_offline"] == 2
    lifecycle.resolve(db, a.id, "tester", "back")
    assert ingest_health(db, since)["gateways_offline"] == 1
