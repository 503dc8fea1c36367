"""The broker credentials and ACL, enforced by a real Mosquitto (private instance).

A sensor publishes only on its own topics, a gateway only on its own gateway topic, the
collector subscribes (also through ``$share``), nobody connects anonymously; the TLS
listener and the shipped deploy/mosquitto/mosquitto.conf are exercised too.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest

from citypulse.stack import PrivateMosquitto, free_port
from ingest import registry
from ingest.credentials import make_self_signed, verify_password, write_credentials
from tests.support import wait_for

ROOT = Path(__file__).resolve().parents[3]
PREFIX = "city"


class Client:
    """A paho MQTT 5 client that records what it receives and how CONNECT went."""

    def __init__(self, port: int, username: str | None, password: str | None,
                 tls_ca: Path | None = None) -> None:
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                             client_id=f"t-{username}-{uuid.uuid4().hex[:6]}",
                             protocol=mqtt.MQTTv5)
        if username:
            self.c.username_pw_set(username, password)
        if tls_ca:
            self.c.tls_set(ca_certs=str(tls_ca))
        self.connected = threading.Event()
        self.done = threading.Event()
        self.rc = None
        self.messages: list[tuple[str, bytes]] = []
        self.granted: list = []
        self.subscribed = threading.Event()
        self.c.on_connect = self._on_connect
        self.c.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))
        self.c.on_subscribe = self._on_subscribe
        self.c.on_disconnect = lambda *a: self.done.set()
        self.c.connect_async("127.0.0.1", port)
        self.c.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.rc = reason_code
        (self.connected if not reason_code.is_failure else self.done).set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        self.granted = list(reason_codes)
        self.subscribed.set()

    def wait_connect(self, timeout: float = 5.0) -> bool:
        """True once connected; False when refused (or no answer within ``timeout``)."""
        wait_for(lambda: self.connected.is_set() or self.done.is_set(), timeout, every=0.02)
        return self.connected.is_set()

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        self.c.publish(topic, payload, qos=qos).wait_for_publish(5)

    def subscribe(self, topic: str) -> list:
        self.subscribed.clear()
        self.c.subscribe(topic, qos=1)
        assert self.subscribed.wait(5)
        return self.granted

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def creds(tmp_path):
    dep = tmp_path / "deployment.csv"
    dep.write_text("sensor_id,kind,lon,lat,gateway_id\n"
                   "s-direct-1,traffic,121.93,30.90,\n"
                   "s-direct-2,air,121.93,30.90,\n"
                   "s-behind-1,air,121.93,30.90,gw-1\n"
                   "s-behind-2,noise,121.93,30.90,gw-1\n"
                   "s-behind-3,noise,121.93,30.90,gw-2\n")
    out = tmp_path / "auth"
    summary = write_credentials(dep, out, prefix=PREFIX)
    assert (summary.sensors, summary.gateways) == (2, 2)
    with (out / "credentials.csv").open() as f:
        pw = {r["username"]: r["password"] for r in csv.DictReader(f)}
    return out, pw


@pytest.fixture
def secured(tmp_path, creds):
    out, pw = creds
    with PrivateMosquitto(tmp_path / "mq", password_file=out / "passwd",
                          acl_file=out / "acl") as mq:
        yield mq, pw


def _collect(mq, pw) -> Client:
    col = Client(mq.port, "collector", pw["collector"])
    assert col.wait_connect()
    for f in ("telemetry/+", "gateway/+/telemetry", "status/+"):
        granted = col.subscribe(f"$share/collectors/{PREFIX}/v1/{f}")
        assert not granted[0].is_failure, granted
    return col


def _marker_roundtrip(mq, pw, col: Client) -> None:
    """Publish an allowed marker last: once it arrives, anything earlier has been routed."""
    s = Client(mq.port, "s-direct-2", pw["s-direct-2"])
    assert s.wait_connect()
    marker = uuid.uuid4().hex.encode()
    s.publish(f"{PREFIX}/v1/telemetry/s-direct-2", marker)
    wait_for(lambda: marker in [p for _, p in col.messages], 5, every=0.02)
    s.close()
    assert marker in [p for _, p in col.messages]


def test_password_file_format_and_permissions(creds):
    out, pw = creds
    lines = dict(ln.split(":", 1) for ln in (out / "passwd").read_text().splitlines())
    assert set(lines) == set(pw)
    assert all(re.fullmatch(r"\$7\$101\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+", h) for h in lines.values())
    assert verify_password(pw["gw-1"], lines["gw-1"])
    assert not verify_password(pw["gw-1"], lines["gw-2"])
    assert pw["collector"] not in (out / "passwd").read_text()
    assert (out / "credentials.csv").stat().st_mode & 0o077 == 0
    acl = (out / "acl").read_text()
    assert "s-direct-1" not in acl  # sensors are covered by %u patterns, not listed


def test_rerun_keeps_passwords_and_adds_new_devices(creds, tmp_path):
    out, pw = creds
    dep = tmp_path / "more.csv"
    dep.write_text("sensor_id,kind,lon,lat,gateway_id\ns-direct-1,traffic,1,1,\n"
                   "s-new,air,1,1,\ns-behind-1,air,1,1,gw-1\n")
    summary = write_credentials(dep, out, prefix=PREFIX)
    assert summary.new_passwords == 1
    with (out / "credentials.csv").open() as f:
        again = {r["username"]: r["password"] for r in csv.DictReader(f)}
    assert again["s-direct-1"] == pw["s-direct-1"] and again["collector"] == pw["collector"]
    assert "s-new" in again


def test_anonymous_and_wrong_password_refused(secured):
    mq, pw = secured
    anon = Client(mq.port, None, None)
    assert not anon.wait_connect()
    anon.close()
    bad = Client(mq.port, "s-direct-1", pw["s-direct-2"])
    assert not bad.wait_connect()
    assert bad.rc is not None and bad.rc.is_failure
    bad.close()


def test_sensor_publishes_only_its_own_topics(secured):
    mq, pw = secured
    col = _collect(mq, pw)
    s = Client(mq.port, "s-direct-1", pw["s-direct-1"])
    assert s.wait_connect()
    s.publish(f"{PREFIX}/v1/telemetry/s-direct-1", b"own")
    s.publish(f"{PREFIX}/v1/status/s-direct-1", b"online")
    s.publish(f"{PREFIX}/v1/telemetry/s-direct-2", b"spoofed-sensor")
    s.publish(f"{PREFIX}/v1/status/s-direct-2", b"spoofed-status")
    s.publish(f"{PREFIX}/v1/gateway/gw-1/telemetry", b"spoofed-gateway")
    s.publish(f"{PREFIX}/v1/alerts/critical/z1", b"spoofed-alert")
    _marker_roundtrip(mq, pw, col)
    got = {(t, p) for t, p in col.messages}
    assert (f"{PREFIX}/v1/telemetry/s-direct-1", b"own") in got
    assert (f"{PREFIX}/v1/status/s-direct-1", b"online") in got
    assert not [p for _, p in got if p.startswith(b"spoofed")]
    s.close()
    col.close()


def test_gateway_publishes_only_its_own_gateway_topic(secured):
    mq, pw = secured
    col = _collect(mq, pw)
    g = Client(mq.port, "gw-1", pw["gw-1"])
    assert g.wait_connect()
    g.publish(f"{PREFIX}/v1/gateway/gw-1/telemetry", b"gw-own")
    g.publish(f"{PREFIX}/v1/gateway/gw-2/telemetry", b"spoofed-other-gw")
    g.publish(f"{PREFIX}/v1/telemetry/s-behind-1", b"spoofed-direct")
    _marker_roundtrip(mq, pw, col)
    payloads = [p for _, p in col.messages]
    assert b"gw-own" in payloads
    assert not [p for p in payloads if p.startswith(b"spoofed")]
    g.close()
    col.close()


def test_devices_cannot_subscribe_and_collector_cannot_publish(secured):
    mq, pw = secured
    col = _collect(mq, pw)
    spy = Client(mq.port, "s-direct-1", pw["s-direct-1"])
    assert spy.wait_connect()
    spy.subscribe(f"{PREFIX}/v1/#")
    col.publish(f"{PREFIX}/v1/telemetry/s-direct-1", b"spoofed-by-collector")
    _marker_roundtrip(mq, pw, col)
    assert not [p for _, p in col.messages if p.startswith(b"spoofed")]
    assert spy.messages == []  # a device reads nothing, not even the marker
    spy.close()
    col.close()



def test_sensorthings_relay_and_readers_have_least_privilege(secured):
    """The collector announces, the relay reads that and writes v1.1/#, readers only read it."""
    mq, pw = secured
    col = _collect(mq, pw)
    relay = Client(mq.port, "sta", pw["sta"])
    reader = Client(mq.port, "sta_reader", pw["sta_reader"])
    assert relay.wait_connect() and reader.wait_connect()
    relay.subscribe(f"{PREFIX}/v1/committed")
    reader.subscribe("v1.1/#")
    reader.subscribe(f"{PREFIX}/v1/#")
    col.publish(f"{PREFIX}/v1/committed", b"batch")
    reader.publish("v1.1/Datastreams(1)/Observations", b"spoofed-by-reader")
    relay.publish(f"{PREFIX}/v1/telemetry/s-direct-1", b"spoofed-by-relay")
    relay.publish(f"{PREFIX}/v1/committed", b"spoofed-batch")
    relay.publish("v1.1/Datastreams(1)/Observations", b"observation")
    wait_for(lambda: relay.messages and reader.messages, 5, every=0.02)
    _marker_roundtrip(mq, pw, col)
    assert relay.messages == [(f"{PREFIX}/v1/committed", b"batch")]
    assert reader.messages == [("v1.1/Datastreams(1)/Observations", b"observation")]
    assert not [p for _, p in col.messages if p.startswith(b"spoofed")]
    for c in (relay, reader, col):
        c.close()


def test_tls_listener(tmp_path, creds):
    out, pw = creds
    certs = make_self_signed(tmp_path / "pki", ["localhost", "127.0.0.1"])
    summary = write_credentials(tmp_path / "deployment.csv", out, prefix=PREFIX,
                                tls_dir=certs["ca"].parent, mount_dir=str(out))
    assert summary.tls
    tls_port = free_port()
    conf = (out / "conf.d/tls.conf").read_text().replace("listener 8883",
                                                          f"listener {tls_port} 127.0.0.1")
    with PrivateMosquitto(tmp_path / "mq", password_file=out / "passwd",
                          acl_file=out / "acl", extra=conf) as mq:
        col = _collect(mq, pw)
        s = Client(tls_port, "s-direct-1", pw["s-direct-1"], tls_ca=certs["ca"])
        assert s.wait_connect(), s.rc
        s.publish(f"{PREFIX}/v1/telemetry/s-direct-1", b"over-tls")
        _marker_roundtrip(mq, pw, col)
        assert b"over-tls" in [p for _, p in col.messages]
        s.close()
        anon = Client(tls_port, None, None, tls_ca=certs["ca"])
        assert not anon.wait_connect()
        anon.close()
        col.close()


def test_shipped_broker_config_and_healthcheck(tmp_path, creds):
    """deploy/mosquitto/mosquitto.conf as shipped (paths moved to tmp) with the generated files."""
    out, pw = creds
    port = free_port()
    conf = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
    conf = conf.replace("/mosquitto/auth", str(out)).replace("/mosquitto/data", str(tmp_path))
    conf = conf.replace("listener 1883", f"listener {port} 127.0.0.1")
    conf = conf.replace("log_dest stdout", f"log_dest file {tmp_path}/mq.log")
    conf += "user root\n"
    (tmp_path / "m.conf").write_text(conf)
    proc = subprocess.Popen(["mosquitto", "-c", str(tmp_path / "m.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from citypulse.stack import wait_port

        wait_port(port, 10)
        probe = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t",
                 "$SYS/broker/uptime", "-C", "1", "-W", "5"]
        ok = subprocess.run([*probe, "-u", "healthcheck", "-P", pw["healthcheck"]],
                            capture_output=True, text=True, timeout=10)
        assert ok.returncode == 0 and "seconds" in ok.stdout
        anon = subprocess.run(probe, capture_output=True, text=True, timeout=10)
        assert anon.returncode != 0
    finally:
        proc.terminate()
        proc.wait(10)


def test_end_to_end_tls_collector_with_credentials(tmp_path, creds, db_url):
    """Devices and the real collector over TLS with their own credentials; spoofs never land."""
    out, pw = creds
    certs = make_self_signed(tmp_path / "pki", ["localhost", "127.0.0.1"])
    write_credentials(tmp_path / "deployment.csv", out, prefix=PREFIX,
                      tls_dir=certs["ca"].parent, mount_dir=str(out))
    tls_port = free_port()
    conf = (out / "conf.d/tls.conf").read_text().replace("listener 8883",
                                                          f"listener {tls_port} 127.0.0.1")
    with psycopg.connect(db_url, autocommit=True) as conn:
        registry.upsert(conn, [registry.SensorRecord(s, "traffic", 121.93, 30.9, gw, "{}")
                               for s, gw in (("s-direct-1", None), ("s-direct-2", None),
                                             ("s-behind-1", "gw-1"), ("s-behind-3", "gw-2"))])
    metrics = free_port()
    with PrivateMosquitto(tmp_path / "mq", password_file=out / "passwd",
                          acl_file=out / "acl", extra=conf):
        env = dict(os.environ, CITYPULSE_DATABASE_URL=db_url, CITYPULSE_TOPIC_PREFIX=PREFIX,
                   CITYPULSE_MQTT_URL=f"mqtts://collector:{pw['collector']}@127.0.0.1:{tls_port}",
                   CITYPULSE_MQTT_CA_FILE=str(certs["ca"]), CITYPULSE_SPOOL_DIR=str(tmp_path / "sp"))
        log = open(tmp_path / "collector.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "citypulse", "ingest", "--share",
                                 "collectors", "--metrics-port", str(metrics)],
                                env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            def subscribed() -> bool:  # the gauge is set on the SUBACK
                assert proc.poll() is None, (tmp_path / "collector.log").read_text()[-2000:]
                try:
                    return "citypulse_ingest_mqtt_connected 1.0" in urllib.request.urlopen(
                        f"http://127.0.0.1:{metrics}/metrics", timeout=2).read().decode()
                except OSError:
                    return False
            if not wait_for(subscribed, 30, every=0.2):
                raise AssertionError((tmp_path / "collector.log").read_text()[-2000:])
            now = int(time.time() * 1000)

            def reading(seq: int) -> bytes:
                return json.dumps({"ts": now + seq, "seq": seq,
                                   "values": {"vehicle_count": 7, "speed_kmh": 40.0}}).encode()
            s1 = Client(tls_port, "s-direct-1", pw["s-direct-1"], tls_ca=certs["ca"])
            gw = Client(tls_port, "gw-1", pw["gw-1"], tls_ca=certs["ca"])
            assert s1.wait_connect() and gw.wait_connect()
            s1.publish(f"{PREFIX}/v1/telemetry/s-direct-1", reading(1))
            s1.publish(f"{PREFIX}/v1/telemetry/s-direct-2", reading(66))        # spoof
            gw.publish(f"{PREFIX}/v1/gateway/gw-1/telemetry",
                       json.dumps({"s-behind-1": [json.loads(reading(2))]}).encode())
            gw.publish(f"{PREFIX}/v1/gateway/gw-2/telemetry",                  # spoof
                       json.dumps({"s-behind-3": [json.loads(reading(77))]}).encode())
            # allowed markers last: once stored, anything each client sent before was routed
            # (and committed by the one collector, in arrival order)
            s1.publish(f"{PREFIX}/v1/telemetry/s-direct-1", reading(3))
            gw.publish(f"{PREFIX}/v1/gateway/gw-1/telemetry",
                       json.dumps({"s-behind-1": [json.loads(reading(4))]}).encode())
            s1.close()
            gw.close()
            q = ("SELECT s.sensor_id, r.seq FROM citypulse.raw r JOIN citypulse.sensors s "
                 "ON s.id = r.sensor ORDER BY 1")
            with psycopg.connect(db_url, autocommit=True) as conn:
                wait_for(lambda: {("s-behind-1", 4), ("s-direct-1", 3)}
                         <= set(conn.execute(q).fetchall()), 20, every=0.2)
                rows = conn.execute(q + ", 2").fetchall()
            assert rows == [("s-behind-1", 2), ("s-behind-1", 4), ("s-direct-1", 1),
                            ("s-direct-1", 3)]
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()
