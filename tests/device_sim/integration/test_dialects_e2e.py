"""`sim run --dialect ...` through the real broker, the collector's adapters and PostgreSQL."""

from __future__ import annotations

import psycopg
import pytest

from device_sim.deploy import write
from device_sim.run import RunConfig, run
from ingest import registry
from tests.ingest.conftest import start_collector, wait_until  # noqa: F401 (fixture)


@pytest.mark.parametrize("dialect", ["thingsboard", "chirpstack", "ttn"])
def test_sim_dialect_lands_every_reading(dialect, settings, start_collector, deployment,  # noqa: F811
                                         tmp_path):
    dep = write(deployment, tmp_path / "dep.parquet")
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        registry.upsert(conn, registry.read_file(dep))
    c = start_collector(settings.model_copy(update={"sources": [dialect]}))
    cfg = RunConfig(deployment=dep, mqtt_url=settings.mqtt_url, prefix=settings.topic_prefix,
                    seed=5, rate=600, duration=1.5, qos=1, processes=1, device_connections=0,
                    dialect=dialect)
    summary = run(cfg)
    assert summary.publish_errors == 0 and summary.readings > 300

    def counts():
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            return conn.execute("SELECT (SELECT count(*) FROM citypulse.raw), "
                                "(SELECT count(*) FROM citypulse.dead_letters)").fetchone()

    assert wait_until(lambda: counts()[0] >= summary.readings, 30), (counts(), summary)
    assert c.wait_idle(10)
    assert counts() == (summary.readings, 0)
    assert c.metrics.value("citypulse_ingest_source_readings_total", source=dialect) \
        == summary.readings
