"""Sharing fixtures: one seeded database per session, scenario folders, settings."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from citypulse.catalogue import MAX_SLOTS
from citypulse.schema import Store
from citypulse.settings import Settings
from sharing.policy import SCENARIOS_DIR
from tests.conftest import fresh_database

TWO_RECIPIENTS = """title: two researchers
purpose: pseudonym test
recipients: [{name: lab-a}, {name: lab-b}]
destination: domestic
rate_limit_per_min: 3
datasets:
  readings.water:
    fields:
      time:
      sensor_id: {pseudonymise: {}}
      level_m:
  registry:
    fields:
      sensor_id: {pseudonymise: {}}
      kind:
      zone_id:
      gateway_id:
"""


@pytest.fixture(scope="session")
def share_db(pg) -> str:
    url = fresh_database(pg)
    settings = Settings(database_url=url)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    with psycopg.connect(url, autocommit=True) as conn:
        from bench.seed import seed

        seed(conn, settings, sensors=600, minutes=20, alerts=2, now=now)
        store = Store.open(conn, settings, migrate_now=False)
        ids = [r[0] for r in conn.execute(
            "SELECT id FROM citypulse.sensors WHERE kind = 'water' ORDER BY id")]
        rows = [(now - timedelta(minutes=m), i, None, 1.0 + i % 7, 0.5,
                 *([None] * (MAX_SLOTS - 2))) for m in range(1, 20) for i in ids]
        store.write_rows(conn, rows)
        conn.execute("INSERT INTO citypulse.twin_od_hourly VALUES (%s, 'port', 'park', 12), "
                     "(%s, 'park', 'depot', 2)", (now.replace(minute=0) - timedelta(hours=1),
                                                   now.replace(minute=0) - timedelta(hours=1)))
    return url


@pytest.fixture(scope="session")
def share_data_dir(tmp_path_factory) -> Path:
    """One data dir (signing key, pseudonym key, heads file) for the session's database."""
    return tmp_path_factory.mktemp("share-data")


@pytest.fixture
def scenarios_dir(tmp_path) -> Path:
    d = tmp_path / "scenarios"
    shutil.copytree(SCENARIOS_DIR, d)
    (d / "two_labs.yaml").write_text(TWO_RECIPIENTS)
    return d


@pytest.fixture
def share_settings(share_db, scenarios_dir, share_data_dir) -> Settings:
    return Settings(database_url=share_db, data_dir=share_data_dir,
                    share_scenarios_dir=scenarios_dir)


def serve_recipients(share_db: str, data_dir: Path, tmp: Path, scenarios: dict[str, str],
                     keys: dict[str, list[str]]):
    """The dashboards app with the shipped scenarios plus ``scenarios`` (name -> YAML) and
    one API key per ``keys`` item (key name -> scopes); ``(served, {name: key})``."""
    from citypulse import apikeys
    from dashboards.app import create_app
    from dashboards.serve import serve

    scen = tmp / "scenarios"
    shutil.copytree(SCENARIOS_DIR, scen)
    for name, text in scenarios.items():
        (scen / f"{name}.yaml").write_text(text)
    settings = Settings(database_url=share_db, data_dir=data_dir,
                        dashboard_secret="test-secret-0123456789", share_scenarios_dir=scen)
    with psycopg.connect(share_db, autocommit=True) as conn:
        made = {name: apikeys.create(conn, name, scopes, "test")[1]
                for name, scopes in keys.items()}
    return serve(create_app(settings)), made


@pytest.fixture
def share_conn(share_db):
    with psycopg.connect(share_db, autocommit=True) as conn:
        yield conn
