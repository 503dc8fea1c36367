"""The wall during the demo's fault profile, in Chromium: device upkeep stays off the wall and
/emergency, the maintenance queue lists the injected faulty devices, the counts agree.

The city's readings come from the simulator's behaviour model with ``Faults.default()`` (the
demo's), through the collector's clock policy, the alert engine and the upkeep sync, on a
virtual clock (``bench.alerts_faults``); then the real app serves that database.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from analytics import maintenance, upkeep
from citypulse.settings import Settings
from dashboards.serve import login
from tests.conftest import fresh_database

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SENSORS = 3000
MINUTES = 12.0


@pytest.fixture(scope="module")
def faulty(pg, broker, tmp_path_factory):
    from analytics.delivery import Delivery
    from analytics.engine import CityModel
    from bench.alerts import Sim, Subscriber
    from bench.alerts_faults import FAULT_START, injected, score_faults
    from dashboards.app import create_app
    from dashboards.serve import serve

    url = fresh_database(pg)
    settings = Settings(database_url=url, mqtt_url=broker.url,
                        topic_prefix="faults" + uuid.uuid4().hex[:6])
    with psycopg.connect(url, autocommit=True) as conn:
        sim = Sim(conn, settings, SENSORS, 0)
        sub, delivery = Subscriber(settings), Delivery(settings, webhook_urls=[])
        try:
            score = score_faults(sim, conn, sub, delivery, CityModel(), MINUTES)
        finally:
            delivery.close()
            sub.close()
        truth = injected(sim, FAULT_START.timestamp() + MINUTES * 60, settings.clock_ahead_s)
    app = create_app(Settings(database_url=url, kiosk_token="kiosk-faults-123",
                              dashboard_secret="test-secret-0123456789",
                              data_dir=tmp_path_factory.mktemp("faults")))
    served = serve(app)
    yield served, url, score, truth
    served.stop()


def test_upkeep_stays_off_the_wall_and_the_queue_lists_the_faulty_devices(faulty, page):
    served, url, score, truth = faulty
    # a clock behind gets a ticket only once it looks silent: not asked of every one
    faulty_ids = truth["stuck"] | truth["battery"] | truth["clock_ahead"]
    assert faulty_ids and score["tickets"] > 0
    with psycopg.connect(url, autocommit=True) as conn:
        open_alerts = [dict(zip(("rule", "entity_kind", "entity_id", "title"), r, strict=True))
                       | {"scope": []} for r in conn.execute(
            "SELECT rule, entity_kind, entity_id, title FROM citypulse.alerts "
            "WHERE status <> 'resolved'")]
        tickets = upkeep.open_tickets(conn)
    incidents, upkeep_alerts = maintenance.split(open_alerts)
    assert upkeep_alerts, "the fault profile silences some sensors: upkeep alerts are open"
    login(page, served.url, "operator", "operator")

    page.goto(served.url + "/wall")
    page.wait_for_selector("#wall-ticker .item")
    ticker = page.inner_text("#wall-ticker")
    for a in upkeep_alerts:
        assert a["title"] not in ticker
    tiles = page.inner_text("#wall-tiles")
    assert "sensors online" in tiles.lower()
    online = int(page.inner_text("#wall-tiles .tile:nth-child(2) .value").replace(",", ""))
    silent = {t["device"] for t in tickets if "silent" in t["problems"] and t["kind"] == "sensor"}
    assert online <= SENSORS - len(silent)

    page.goto(served.url + "/emergency")
    page.wait_for_selector("#em-queue table.queue, #em-queue p")
    queue = page.inner_text("#em-queue")
    for a in upkeep_alerts:
        assert a["title"] not in queue
    assert len(incidents) == score["wall_alerts"] == 0

    page.goto(served.url + "/maintenance")
    page.wait_for_selector("#mt-rows .mt-row")
    listed = set(page.eval_on_selector_all(
        "#mt-rows .mt-row", "rows => rows.map(r => r.getAttribute('data-device'))"))
    assert {t["device"] for t in tickets} <= listed
    assert faulty_ids <= listed, sorted(faulty_ids - listed)
    assert not page.log.errors, page.log.errors
    assert datetime.now(UTC) > datetime.fromisoformat(score["start"])
