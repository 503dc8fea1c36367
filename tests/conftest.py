"""Shared fixtures: private PostgreSQL and Mosquitto instances, started from the system binaries.

- ``pg`` (session): one private PostgreSQL cluster; ``db_url`` gives each test a fresh,
  migrated database in it.
- ``broker`` (session): one private Mosquitto; ``topic_prefix`` isolates each test.
- ``pg_own`` / ``broker_own``: private instances a test may stop, kill and restart.
- ``settings``: Settings pointing at the above, with a temp spool dir.
"""

from __future__ import annotations

import itertools
import os
import uuid
from pathlib import Path

import psycopg
import pytest

from citypulse import schema
from citypulse.settings import Settings
from citypulse.stack import PrivateMosquitto, PrivatePostgres

_db_counter = itertools.count()


@pytest.fixture(scope="session")
def pg(tmp_path_factory):
    with PrivatePostgres(tmp_path_factory.mktemp("pg") / "data") as server:
        yield server


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    with PrivateMosquitto(tmp_path_factory.mktemp("mqtt")) as server:
        yield server


def fresh_database(server: PrivatePostgres, backend: str | None = None) -> str:
    """Create an empty database on ``server``, migrate it, return its URL."""
    name = f"t{os.getpid()}_{next(_db_counter)}"
    with psycopg.connect(server.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    url = server.url.rsplit("/", 1)[0] + "/" + name
    settings = Settings(database_url=url)
    with psycopg.connect(url, autocommit=True) as conn:
        schema.migrate(conn, settings, backend=backend)
        schema.Store.open(conn, settings, migrate_now=False)
    return url


@pytest.fixture(scope="session")
def store_backend(pytestconfig) -> str:
    """The store path this run tests (``--store-backend``)."""
    return pytestconfig.getoption("--store-backend")


@pytest.fixture
def db_url(pg) -> str:
    return fresh_database(pg)


@pytest.fixture
def db(db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def topic_prefix() -> str:
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def pg_own(tmp_path):
    with PrivatePostgres(tmp_path / "pg") as server:
        yield server


@pytest.fixture
def broker_own(tmp_path):
    with PrivateMosquitto(tmp_path / "mqtt") as server:
        yield server


@pytest.fixture
def settings(db_url, broker, topic_prefix, tmp_path) -> Settings:
    return Settings(database_url=db_url, mqtt_url=broker.url, topic_prefix=topic_prefix,
                    spool_dir=tmp_path / "spool", data_dir=tmp_path / "data")


def pytest_collection_modifyitems(config, items):
    """Tests under tests/integration get the integration marker; one-path tests follow the path."""
    backend = config.getoption("--store-backend")
    for item in items:
        if "integration" in Path(str(item.fspath)).parts:
            item.add_marker(pytest.mark.integration)
        for path in ("postgres", "timescale"):
            if path != backend and item.get_closest_marker(f"{path}_path"):
                item.add_marker(pytest.mark.skip(reason=f"about the {path} store path only "
                                                        f"(--store-backend {path})"))


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")
    parser.addoption(
        "--store-backend", choices=("postgres", "timescale"), default="postgres",
        help="store path every test runs on (timescale: private servers preload TimescaleDB "
             "and the run fails when it is not installed; CITYPULSE_PG_BINDIR picks the server)")


def pytest_configure(config):
    # every Settings() (tests, fixtures, subprocesses) follows the chosen store path
    os.environ["CITYPULSE_STORE_BACKEND"] = config.getoption("--store-backend")
    if not config.getoption("--run-slow"):
        config.option.markexpr = (
            f"({config.option.markexpr}) and not slow" if config.option.markexpr else "not slow")
