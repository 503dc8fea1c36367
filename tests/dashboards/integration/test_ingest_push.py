"""HTTP push (POST /api/v1/ingest) through the real dashboards app into a private PostgreSQL."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
import requests

from citypulse import apikeys
from citypulse.settings import Settings
from citypulse.stack import PrivatePostgres
from ingest import registry
from tests.conftest import fresh_database
from tests.ingest.conftest import wait_until

PATH = "/api/v1/ingest"


@pytest.fixture(scope="module")
def push(tmp_path_factory):
    from dashboards.app import create_app
    from dashboards.serve import serve

    with PrivatePostgres(tmp_path_factory.mktemp("pushpg") / "data") as server:
        url = fresh_database(server)
        with psycopg.connect(url, autocommit=True) as conn:
            registry.upsert(conn, [registry.SensorRecord(s, k, 121.93, 30.9, None, "{}")
                                   for s, k in (("h-1", "traffic"), ("h-2", "water"))])
            key = apikeys.create(conn, "vendor-bms", ["ingest:http"], "test")[1]
            other = apikeys.create(conn, "reader", ["api:read"], "test")[1]
        settings = Settings(database_url=url, sources=["http"], max_payload_bytes=4096,
                            dashboard_secret="test-secret-0123456789",
                            data_dir=tmp_path_factory.mktemp("pushdata"))
        served = serve(create_app(settings))
        yield server, url, served.url, key, other
        served.stop()


def post(base, key, body, ctype="application/json", **params):
    return requests.post(base + PATH, data=body, params=params, timeout=30, headers={
        "Authorization": f"Bearer {key}", "Content-Type": ctype})


def stored(url: str, sid: str) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT r.seq, r.v0, r.v1 FROM citypulse.raw r JOIN citypulse.sensors s "
                            "ON s.id = r.sensor WHERE s.sensor_id = %s ORDER BY r.time",
                            (sid,)).fetchall()


def test_valid_bodies_are_202_after_commit(push):
    _server, url, base, key, _other = push
    now = int(time.time() * 1000)
    r = post(base, key, f'{{"ts": {now - 3000}, "seq": 1, "values": {{"speed_kmh": 40}}}}',
             sensor_id="h-1")
    assert r.status_code == 202 and r.json()["accepted"] == 1
    body = (f'{{"h-1": [{{"ts": {now - 2000}, "seq": 2, "values": {{"speed_kmh": 41}}}}],'
            f' "h-2": [{{"ts": {now - 2000}, "values": {{"level_m": 1.5}}}}]}}')
    assert post(base, key, body).json() == {"accepted": 2, "duplicates": 0}
    csv = f"sensor_id,ts,seq,speed_kmh,vehicle_count\nh-1,{now - 1000},3,42,7\n"
    assert post(base, key, csv, "text/csv").status_code == 202
    assert [r[0] for r in stored(url, "h-1")] == [1, 2, 3]
    assert stored(url, "h-1")[2][1:] == (7, 42)  # vehicle_count, speed_kmh slots
    assert stored(url, "h-2") == [(None, 1.5, None)]


def test_mixed_and_malformed_bodies_get_4xx_with_reasons(push):
    _server, url, base, key, _other = push
    now = int(time.time() * 1000)
    mixed = [{"sensor_id": "h-2", "ts": now - 500, "values": {"level_m": 2.0}},
             {"sensor_id": "nobody", "ts": now, "values": {"level_m": 1.0}},
             {"sensor_id": "h-2", "ts": now - 400, "values": {"level_m": 999}},
             {"sensor_id": "h-2", "ts": now - 300, "values": {"colour": 3}}]
    r = requests.post(base + PATH, json=mixed, headers={"X-API-Key": key}, timeout=30)
    assert r.status_code == 422
    doc = r.json()
    assert doc["accepted"] == 1
    assert sorted(x["reason"] for x in doc["rejected"]) == ["out_of_range", "unknown_metric",
                                                           "unknown_sensor"]
    assert (None, 2.0, None) in stored(url, "h-2")
    r = post(base, key, b"{not json")
    assert r.status_code == 400 and r.json()["rejected"][0]["reason"] == "malformed"
    r = post(base, key, b"x" * 5000)
    assert r.status_code == 413 and r.json()["rejected"][0]["reason"] == "too_large"
    r = post(base, key, "sensor_id,ts\nh-1,soon\n", "text/csv")
    assert r.status_code == 422 and r.json()["rejected"][0]["reason"] == "bad_timestamp"
    with psycopg.connect(url, autocommit=True) as conn:
        reasons = dict(conn.execute("SELECT reason, count(*) FROM citypulse.dead_letters "
                                    "WHERE topic = 'http/vendor-bms' GROUP BY 1").fetchall())
    assert reasons == {"unknown_sensor": 1, "out_of_range": 1, "unknown_metric": 1,
                       "malformed": 1, "too_large": 1, "bad_timestamp": 1}


def test_wrong_or_missing_key_is_401_and_wrong_scope_403(push):
    _server, _url, base, key, other = push
    assert post(base, key[:-4] + "abcd", b"{}").status_code == 401
    assert requests.post(base + PATH, data=b"{}", timeout=30).status_code == 401
    r = post(base, other, b"{}")
    assert r.status_code == 403 and "ingest:http" in r.json()["error"]


def test_requests_share_pooled_connections(push):
    """No connection per request: the push handler's backends outlive the requests."""
    from dashboards.ingest_api import APP_NAME

    _server, url, base, key, _other = push
    now = int(time.time() * 1000)
    backends: set[int] = set()
    with psycopg.connect(url, autocommit=True) as conn:
        for i in range(12):
            body = f'{{"h-2": [{{"ts": {now - 20_000 + i}, "values": {{"level_m": 1.0}}}}]}}'
            assert post(base, key, body).status_code == 202
            backends |= {r[0] for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (APP_NAME,))}
    assert 1 <= len(backends) <= 4, backends  # one connect per request would give 12


def test_no_202_when_the_database_dies_mid_request_and_nothing_lost_on_retry(push):
    server, url, base, key, _other = push
    now = int(time.time() * 1000)
    body = f'{{"h-1": [{{"ts": {now}, "seq": 100, "values": {{"speed_kmh": 55}}}}]}}'
    blocker = psycopg.connect(url)
    blocker.execute("LOCK TABLE citypulse.raw IN ACCESS EXCLUSIVE MODE")  # the write will wait
    got: list = []
    t = threading.Thread(target=lambda: got.append(post(base, key, body)), daemon=True)
    t.start()

    def waiting() -> bool:
        with psycopg.connect(url, autocommit=True) as c:
            return bool(c.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type "
                                  "= 'Lock' AND datname = current_database()").fetchone()[0])

    assert wait_until(waiting, 30)
    server.stop("immediate")  # the database dies while the request waits to commit
    t.join(60)
    assert got and got[0].status_code != 202 and got[0].status_code >= 500, got
    blocker.close()
    server.start()
    answers = []

    def retried() -> bool:
        try:
            answers.append(post(base, key, body).status_code)
        except requests.RequestException:
            return False
        return answers[-1] == 202

    assert wait_until(retried, 60, 0.5), answers  # a client retries until it gets its 202
    assert post(base, key, body).json() == {"accepted": 0, "duplicates": 1}  # once more: dup
    assert [r for r in stored(url, "h-1") if r[0] == 100] == [(100, None, 55)]


def test_simulator_http_dialect_posts_through_the_app(push):
    """The simulator's http dialect (device_sim.dialects.HttpPublisher) against the real app."""
    import orjson

    from citypulse.wire import topics
    from device_sim.dialects import HttpPublisher, translate

    _server, url, base, key, _other = push
    now = int(time.time() * 1000)
    native = [(topics.telemetry("h-2"), orjson.dumps({"ts": now - 50, "seq": 500,
                                                      "values": {"level_m": 3.0}}), 1),
              (topics.gateway("gw"), orjson.dumps({"h-1": [{"ts": now - 50, "seq": 501,
                                                             "values": {"speed_kmh": 12}}]}), 1)]
    pub = HttpPublisher(base, key)
    assert all(pub.publish(t, p) for t, p, _n in translate("http", native, "city"))
    assert pub.errors == 0 and pub.sent == 2
    assert (500, 3.0, None) in stored(url, "h-2")
    assert any(r[0] == 501 for r in stored(url, "h-1"))
    assert not HttpPublisher(base, "cpk_wrong").publish("http", b"{}")  # 401 is an error
