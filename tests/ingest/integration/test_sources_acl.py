"""Broker ACL of foreign sources, enforced by a real Mosquitto with generated credentials."""

from __future__ import annotations

import csv
import uuid

import pytest

from citypulse.stack import PrivateMosquitto
from ingest import sources
from ingest.credentials import CredentialsError, SourceAccount, write_credentials
from tests.production.integration.test_broker_acl import Client
from tests.support import wait_for


def test_source_accounts_publish_only_their_topics(tmp_path):
    dep = tmp_path / "d.csv"
    dep.write_text("sensor_id,kind,lon,lat,gateway_id\ns-1,air,121.9,30.9,\n")
    accounts = [SourceAccount.parse(a) for a in
                ("thingsboard:gw-north", "chirpstack:cs-ns=app-1", "ttn:tts=app1@tenant1")]
    out = tmp_path / "auth"
    write_credentials(dep, out, accounts=accounts)
    with (out / "credentials.csv").open() as f:
        pw = {r["username"]: r["password"] for r in csv.DictReader(f)}
    with PrivateMosquitto(tmp_path / "mq", password_file=out / "passwd",
                          acl_file=out / "acl") as mq:
        col = Client(mq.port, "collector", pw["collector"])
        assert col.wait_connect()
        for t in (t for s in sources.available() for t in s.subscriptions()):
            assert not col.subscribe(f"$share/collectors/{t}")[0].is_failure, t
        sends = {
            "gw-north": ["v1/gateway/telemetry", "v1/gateway/connect",
                         "application/app-1/device/01/event/up", "city/v1/telemetry/s-1"],
            "cs-ns": ["application/app-1/device/01/event/up", "application/app-1/device/01/event/join",
                      "application/app-2/device/01/event/up", "v1/gateway/telemetry",
                      "v3/app1@tenant1/devices/d/up"],
            "tts": ["v3/app1@tenant1/devices/d/up", "v3/app2@tenant1/devices/d/up",
                    "application/app-1/device/01/event/up"],
            "s-1": ["v1/gateway/telemetry", "application/app-1/device/01/event/up"],
        }
        for user, topics in sends.items():
            c = Client(mq.port, user, pw[user])
            assert c.wait_connect(), user
            for t in topics:
                c.publish(t, f"{user}|{t}".encode())
            c.close()
        marker = uuid.uuid4().hex
        c = Client(mq.port, "gw-north", pw["gw-north"])
        assert c.wait_connect()
        c.publish("v1/gateway/attributes", marker.encode())
        wait_for(lambda: marker.encode() in [p for _, p in col.messages], 5, every=0.02)
        c.close()
        got = {p.decode() for _, p in col.messages} - {marker}
        col.close()
    assert got == {"gw-north|v1/gateway/telemetry", "gw-north|v1/gateway/connect",
                   "cs-ns|application/app-1/device/01/event/up",
                   "cs-ns|application/app-1/device/01/event/join",
                   "tts|v3/app1@tenant1/devices/d/up"}


def test_source_account_errors():
    for text, msg in (("lora:x", "unknown source"), ("chirpstack:cs", "needs =SCOPE"),
                      ("http:x", "not an MQTT source"), ("ttn:a/b=x@y", "username")):
        with pytest.raises(CredentialsError, match=msg):
            SourceAccount.parse(text)
