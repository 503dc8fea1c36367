"""API keys over HTTP: the guard in dashboards/auth.py with the real app and a real database."""

from __future__ import annotations

import flask
import psycopg
import pytest
import requests

from citypulse import apikeys
from dashboards import auth


@pytest.fixture(scope="module")
def keys(dash_db):
    with psycopg.connect(dash_db, autocommit=True) as conn:
        made = {name: apikeys.create(conn, f"http-{name}", scopes, "test")[1]
                for name, scopes in (("reader", ["api:read"]), ("ingest", ["ingest:gw"]),
                                     ("gone", ["api:read"]))}
        apikeys.revoke(conn, "http-gone")
    return made


def test_a_reader_key_reads_without_a_session(dash_server, keys):
    url = dash_server.url + "/api/state"
    r = requests.get(url, headers={"Authorization": "Bearer " + keys["reader"]})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    assert "seg" in r.json()
    assert requests.get(url, headers={"X-API-Key": keys["reader"]}).status_code == 200


def test_keys_without_the_scope_revoked_or_wrong_are_refused(dash_server, keys):
    url = dash_server.url + "/api/state"
    r = requests.get(url, headers={"X-API-Key": keys["ingest"]})
    assert r.status_code == 403 and "api:read" in r.json()["error"]
    for bad in (keys["gone"], keys["reader"][:-3] + "xyz", "cpk_nope"):
        r = requests.get(url, headers={"Authorization": "Bearer " + bad})
        assert r.status_code == 401 and r.headers["Content-Type"] == "application/json"
    # a key is no session: operator actions and the Dash pages stay closed to it
    r = requests.post(dash_server.url + "/api/alerts/1/acknowledge",
                      headers={"X-API-Key": keys["reader"]})
    assert r.status_code == 403
    # nor does a key borrow the role of a browser session sent along with it
    op = requests.Session()
    op.headers["Origin"] = dash_server.url
    op.post(dash_server.url + "/login", data={"username": "operator", "password": "operator"})
    r = op.post(dash_server.url + "/api/alerts/999999/acknowledge",
                headers={"X-API-Key": keys["reader"]})
    assert r.status_code == 403 and "anonymous" in r.json()["error"]
    assert op.post(dash_server.url + "/api/alerts/999999/acknowledge").status_code != 403
    r = requests.get(dash_server.url + "/wall", headers={"X-API-Key": keys["reader"]},
                     allow_redirects=False)
    assert r.status_code == 302 and "/login" in r.headers["Location"]


def test_require_scope_guards_machine_endpoints(dash_db, keys):
    pool_db = dash_db
    server = flask.Flask("t")
    server.secret_key = "x" * 20

    def verify(secret):
        with psycopg.connect(pool_db, autocommit=True) as conn:
            return apikeys.verify(conn, secret)

    auth.install(server, {}, None, verify_key=verify)

    @server.post("/api/ingest/<source>")
    def ingest(source):
        key = auth.require_scope(f"ingest:{source}")
        return {"ok": True, "key": key.name, "name": flask.g.api_key.name}

    @server.get("/api/careless")
    def careless():  # forgets to check: the guard answers 403 anyway
        return {"secret": "data"}

    c = server.test_client()
    ok = c.post("/api/ingest/gw", headers={"X-API-Key": keys["ingest"]})
    assert ok.status_code == 200 and ok.json["key"] == "http-ingest"
    assert c.post("/api/ingest/other", headers={"X-API-Key": keys["ingest"]}).status_code == 403
    assert c.post("/api/ingest/gw").status_code == 401
    assert c.post("/api/ingest/gw", headers={"X-API-Key": keys["gone"]}).status_code == 401
    assert c.get("/api/careless", headers={"X-API-Key": keys["reader"]}).status_code == 403
