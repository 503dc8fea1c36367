"""The web app (dashboards, NGSI-LD, own APIs) on a seeded database, and clients for it."""

from __future__ import annotations

import psycopg
import pytest
import requests

import citypulse.catalogue  # noqa: F401 - the catalogue before the app (actuators import order)
from citypulse import apikeys
from citypulse.settings import Settings
from tests.conftest import fresh_database


@pytest.fixture(scope="session")
def std_db(pg) -> str:
    url = fresh_database(pg)
    with psycopg.connect(url, autocommit=True) as conn:
        from bench.seed import seed

        seed(conn, Settings(database_url=url), sensors=1500, minutes=30, alerts=4)
    return url


@pytest.fixture(scope="session")
def std_settings(std_db, tmp_path_factory) -> Settings:
    return Settings(database_url=std_db, dashboard_secret="test-secret-0123456789",
                    data_dir=tmp_path_factory.mktemp("std"), sources=["http"])


@pytest.fixture(scope="session")
def std_server(std_settings):
    from dashboards.app import create_app
    from dashboards.serve import serve

    served = serve(create_app(std_settings))
    yield served
    served.stop()


def login(server, user: str) -> requests.Session:
    """A logged-in session of a dev user (browser-like: the login POST carries an Origin)."""
    s = requests.Session()
    r = s.post(server.url + "/login", data={"username": user, "password": user},
               headers={"Origin": server.url}, allow_redirects=False, timeout=30)
    assert r.status_code == 302
    return s


@pytest.fixture(scope="session")
def viewer(std_server) -> requests.Session:
    return login(std_server, "viewer")


@pytest.fixture(scope="session")
def read_key(std_db) -> str:
    with psycopg.connect(std_db, autocommit=True) as conn:
        _info, secret = apikeys.create(conn, "ngsi-reader", ["api:read"], "admin")
    return secret


@pytest.fixture
def db(std_db):
    with psycopg.connect(std_db, autocommit=True) as conn:
        yield conn
