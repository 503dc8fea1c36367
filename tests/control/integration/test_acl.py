"""The broker ACL for commands: a device reads only its own commands, answers only for itself."""

from __future__ import annotations

import csv
import uuid

from citypulse.stack import PrivateMosquitto
from citypulse.wire import topics
from ingest.credentials import write_credentials
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
