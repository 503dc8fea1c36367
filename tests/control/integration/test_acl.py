"""The broker ACL for commands: a device reads only its own commands, answers only for itself."""

from __future__ import annotations

import csv
import uuid

from citypulse.stack import PrivateMosquitto
from citypulse.wire import topics
from ingest.credentials import SourceAccount, write_credentials
from tests.production.integration.test_broker_acl import Client
from tests.support import wait_for

P = "city"


def test_device_reads_only_its_own_commands_and_answers_only_for_itself(tmp_path):
    dep = tmp_path / "dep.csv"
    dep.write_text("sensor_id,kind,lon,lat,gateway_id\npmp-1,pump,121.93,30.9,\n"
                   "pmp-2,pump,121.93,30.9,\n")
    out = tmp_path / "auth"
    write_credentials(dep, out, prefix=P)
    with (out / "credentials.csv").open() as f:
        pw = {r["username"]: r["password"] for r in csv.DictReader(f)}
    with PrivateMosquitto(tmp_path / "mq", password_file=out / "passwd",
                          acl_file=out / "acl") as mq:
        worker = Client(mq.port, "commands", pw["commands"])
        dev = Client(mq.port, "pmp-1", pw["pmp-1"])
        assert worker.wait_connect() and dev.wait_connect()
        worker.subscribe(f"{P}/v1/commands/+/response")
        dev.subscribe(topics.command("pmp-1", P))
        dev.subscribe(topics.command("pmp-2", P))   # not its own: never delivered
        dev.subscribe(topics.command_events(P))
        marker = uuid.uuid4().hex.encode()
        worker.publish(topics.command("pmp-2", P), b"other-" + marker)
        worker.publish(topics.command("pmp-1", P), b"own-" + marker)
        dev.publish(topics.command_response("pmp-2", P), b"spoofed-" + marker)
        dev.publish(topics.command_response("pmp-1", P), b"answer-" + marker)
        wait_for(lambda: [p for _, p in dev.messages if p.startswith(b"own-")]
                 and [p for _, p in worker.messages if p.startswith(b"answer-")], 5, every=0.02)
        assert [p for _, p in dev.messages] == [b"own-" + marker]
        assert [p for _, p in worker.messages] == [b"answer-" + marker]
        dev.close()
        worker.close()


def test_downlink_topics_reach_only_the_gateway_and_the_network_server_of_the_application(
        tmp_path):
    dep = tmp_path / "dep.csv"
    dep.write_text("sensor_id,kind,lon,lat,gateway_id\npmp-1,pump,121.93,30.9,\n")
    out = tmp_path / "auth"
    write_credentials(dep, out, prefix=P, accounts=[
        SourceAccount.parse(a) for a in ("thingsboard:gw-north", "chirpstack:cs-ns=app-1")])
    with (out / "credentials.csv").open() as f:
        pw = {r["username"]: r["password"] for r in csv.DictReader(f)}
    down1, down2 = "application/app-1/device/01/command/down", "application/app-2/device/01/command/down"
    with PrivateMosquitto(tmp_path / "mq", password_file=out / "passwd",
                          acl_file=out / "acl") as mq:
        who = {u: Client(mq.port, u, pw[u]) for u in ("commands", "gw-north", "cs-ns", "pmp-1")}
        assert all(c.wait_connect() for c in who.values())
        for u, subs in (("commands", ["v1/gateway/rpc", "application/+/device/+/event/ack",
                                      "application/+/device/+/event/txack"]),
                        ("gw-north", ["v1/gateway/rpc"]),
                        ("cs-ns", ["application/+/device/+/command/down"]),
                        ("pmp-1", ["v1/gateway/rpc", "application/+/device/+/command/down"])):
            for t in subs:
                who[u].subscribe(t)
        m = uuid.uuid4().hex
        who["commands"].publish("v1/gateway/rpc", f"rpc-{m}".encode())
        who["commands"].publish(down2, f"app2-{m}".encode())
        who["commands"].publish(down1, f"app1-{m}".encode())
        who["gw-north"].publish("v1/gateway/rpc", f"reply-{m}".encode())
        who["cs-ns"].publish("application/app-2/device/01/event/ack", f"spoof-{m}".encode())
        who["cs-ns"].publish("application/app-1/device/01/event/ack", f"ack-{m}".encode())
        who["pmp-1"].publish("v1/gateway/rpc", f"sensor-{m}".encode())

        def got(u):
            return sorted(p.decode().removesuffix(m) for _, p in who[u].messages)

        # the worker hears its own request and the gateway's reply, and only app-1's ack
        assert wait_for(lambda: got("commands") == ["ack-", "reply-", "rpc-"], 10), got("commands")
        assert wait_for(lambda: got("gw-north") == ["reply-", "rpc-"], 10), got("gw-north")
        assert wait_for(lambda: got("cs-ns") == ["app1-"], 10), got("cs-ns")
        assert got("pmp-1") == []  # a sensor reads no downlink and sends no RPC reply
        for c in who.values():
            c.close()


def test_ttn_downlinks_reach_only_the_stack_account_of_the_application(tmp_path):
    dep = tmp_path / "dep.csv"
    dep.write_text("sensor_id,kind,lon,lat,gateway_id\npmp-1,pump,121.93,30.9,\n")
    out = tmp_path / "auth"
    write_credentials(dep, out, prefix=P, accounts=[SourceAccount.parse("ttn:tts=app1@t1")])
    with (out / "credentials.csv").open() as f:
        pw = {r["username"]: r["password"] for r in csv.DictReader(f)}
    v3 = "v3/{}/devices/d1/{}".format
    with PrivateMosquitto(tmp_path / "mq", password_file=out / "passwd",
                          acl_file=out / "acl") as mq:
        who = {u: Client(mq.port, u, pw[u]) for u in ("commands", "tts", "pmp-1")}
        assert all(c.wait_connect() for c in who.values())
        for u, subs in (("commands", ["v3/+/devices/+/down/ack", "v3/+/devices/+/down/sent"]),
                        ("tts", ["v3/+/devices/+/down/push"]),
                        ("pmp-1", ["v3/+/devices/+/down/push", "v3/+/devices/+/down/ack"])):
            for t in subs:
                who[u].subscribe(t)
        m = uuid.uuid4().hex
        who["commands"].publish(v3("app2@t1", "down/push"), f"app2-{m}".encode())
        who["commands"].publish(v3("app1@t1", "down/push"), f"app1-{m}".encode())
        who["tts"].publish(v3("app2@t1", "down/ack"), f"spoof-{m}".encode())
        who["tts"].publish(v3("app1@t1", "down/sent"), f"sent-{m}".encode())
        who["tts"].publish(v3("app1@t1", "down/ack"), f"ack-{m}".encode())
        who["pmp-1"].publish(v3("app1@t1", "down/ack"), f"sensor-{m}".encode())

        def got(u):
            return sorted(p.decode().removesuffix(m) for _, p in who[u].messages)

        # the worker hears only app1's outcomes; the stack reads only app1's pushes
        assert wait_for(lambda: got("commands") == ["ack-", "sent-"], 10), got("commands")
        assert wait_for(lambda: got("tts") == ["app1-"], 10), got("tts")
        assert got("pmp-1") == []  # a sensor reads no downlink and sends no outcome
        for c in who.values():
            c.close()
