from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict

import paho.mqtt.client as mqtt
import polars as pl
import pytest

from citypulse.wire import payload, topics
from device_sim.deploy import write
from device_sim.mqtt import Publisher
from device_sim.replay import replay
from device_sim.run import RunConfig, run
from tests.support import hold, stays_false, wait_for


class Subscriber:
    """Collects (topic, payload) in arrival order from prefix/# (live messages only)."""

    def __init__(self, broker, prefix: str) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sub-{prefix}")
        self.c.on_message = lambda c, u, m: m.retain or self.got.append((m.topic, m.payload))
        subscribed = threading.Event()
        self.c.on_subscribe = lambda *_a: subscribed.set()
        self.c.connect("127.0.0.1", broker.port)
        self.c.subscribe(f"{prefix}/#", qos=1)
        self.c.loop_start()
        assert subscribed.wait(15), "no SUBACK"

    def settle(self, expect: int, timeout: float = 15) -> list[tuple[str, bytes]]:
        wait_for(lambda: len(self.got) >= expect, timeout)
        def quiet() -> bool:  # 0.3 s in which nothing more arrives
            n = len(self.got)
            return stays_false(lambda: len(self.got) != n, within=0.3)
        wait_for(quiet, timeout)
        return list(self.got)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


@pytest.fixture
def dep_file(tmp_path, deployment):
    return write(deployment, tmp_path / "dep.parquet")


def recorded(path) -> list[tuple[str, bytes]]:
    df = pl.read_parquet(path)
    return list(zip(df["topic"].to_list(), df["payload"].to_list(), strict=True))


def test_run_matches_recording_and_replay_is_byte_identical(broker, topic_prefix, dep_file,
                                                            tmp_path):
    sub = Subscriber(broker, topic_prefix)
    cfg = RunConfig(deployment=dep_file, mqtt_url=broker.url, prefix=topic_prefix, seed=5,
                    speedup=30, duration=2.0, qos=1, processes=1, device_connections=0,
                    record=tmp_path / "feed.parquet", tick=0.1)
    summary = run(cfg)
    rec = recorded(tmp_path / "feed.parquet")
    assert summary.publish_errors == 0 and summary.readings > 3000
    got = sub.settle(len(rec))
    sub.close()
    assert got == rec  # one connection, QoS 1: same messages, same order
    # per-sensor seq is contiguous, and the reading count matches the summary
    seqs = defaultdict(list)
    n = 0
    for topic, data in got:
        tp = topics.parse(topic, topic_prefix)
        if tp.kind == topics.STATUS:
            assert data == b"online"
            continue
        d = payload.decode(data, tp, 0)
        assert d.rejected == ()
        for r in d.readings:
            seqs[r.sensor_id].append(r.seq)
            n += 1
    assert n == summary.readings
    assert len(seqs) > 1000
    for sid, s in seqs.items():
        assert s == list(range(s[0], s[0] + len(s))), sid
    # replay, flat out: byte for byte, in order
    sub2 = Subscriber(broker, topic_prefix)
    res = replay(tmp_path / "feed.parquet", broker.url, speed=0)
    assert res["messages"] == len(rec) and res["publish_errors"] == 0
    again = sub2.settle(len(rec))
    sub2.close()
    assert again == rec


def test_replay_keeps_the_timing(broker, topic_prefix, tmp_path):
    from device_sim.mqtt import Recorder

    rec = Recorder(tmp_path / "r.parquet")
    for i in range(20):
        rec.add(i * 0.05, f"{topic_prefix}/v1/telemetry/s{i}", b'{"x":1}', 0, False)
    rec.close()
    t = time.monotonic()
    replay(tmp_path / "r.parquet", broker.url, speed=1.0)
    assert 0.9 <= time.monotonic() - t  # never faster than recorded (speed: bench, not here)
    replay(tmp_path / "r.parquet", broker.url, speed=10.0)
    sub = Subscriber(broker, topic_prefix + "x")
    replay(tmp_path / "r.parquet", broker.url, speed=0, prefix=topic_prefix + "x")
    got = sub.settle(20)
    sub.close()
    assert got == [(f"{topic_prefix}x/v1/telemetry/s{i}", b'{"x":1}') for i in range(20)]


def test_multiprocess_gateway_run(broker, topic_prefix, dep_file, tmp_path):
    sub = Subscriber(broker, topic_prefix)
    cfg = RunConfig(deployment=dep_file, mqtt_url=broker.url, prefix=topic_prefix, seed=5,
                    rate=4000, duration=2.0, qos=0, processes=2, device_connections=2,
                    record=tmp_path / "feed.parquet")
    summary = run(cfg)
    rec = recorded(tmp_path / "feed.parquet")
    got = sub.settle(len(rec))
    sub.close()
    assert summary.processes == 2 and summary.publish_errors == 0
    assert Counter(got) == Counter(rec)
    assert any("/gateway/" in t for t, _ in rec) and any("/telemetry/" in t for t, _ in rec)
    assert 0.5 * 4000 < summary.achieved_readings_per_s < 1.5 * 4000
    assert set(pl.read_parquet(tmp_path / "feed.parquet")["worker"].unique()) == {0, 1}


def test_direct_device_last_will(broker, topic_prefix):
    sub = Subscriber(broker, topic_prefix)
    status = topics.status("trf-000001", topic_prefix)
    dev = Publisher(broker.url, "dev-will-test", will=(status, b"offline"))
    dev.connect()
    dev.publish(status, b"online", qos=1, retain=True)
    dev.drain()
    dev.client.socket().close()  # the device vanishes without DISCONNECT
    got = sub.settle(2)
    sub.close()
    assert (status, b"online") in got and got[-1] == (status, b"offline")


def test_run_survives_a_broker_restart(broker_own, dep_file):
    import threading

    seen = []

    def chaos():  # the outage starts once the run publishes, whatever its start-up took
        wait_for(lambda: any(r > 0 for _, r in seen), 120)
        broker_own.kill()
        hold(1.0, "the broker outage under test lasts 1 s")
        broker_own.start()

    threading.Thread(target=chaos, daemon=True).start()
    cfg = RunConfig(deployment=dep_file, mqtt_url=broker_own.url, seed=5, rate=1500,
                    duration=6.0, qos=1, processes=1)
    summary = run(cfg, progress=lambda p: seen.append((p["elapsed"], p["readings"])))
    assert summary.publish_errors > 0  # the outage is reported...
    before = max(r for e, r in seen if e < 2.0)
    assert summary.readings > before + 1500  # ...and publishing resumed after the restart


def test_gateways_heartbeat_unless_dark(broker, topic_prefix, dep_file, deployment, tmp_path):
    """Every gateway publishes at least once per GATEWAY_HEARTBEAT_S (``{}`` when it has no
    reading due), except the one a gateway outage has dark."""
    gws = sorted(deployment["gateway_id"].drop_nulls().unique().to_list())
    dark = gws[len(gws) // 2]
    scen = tmp_path / "outage.yaml"
    scen.write_text(f"name: t\nincidents:\n  - type: gateway_outage\n    at: 0s\n"
                    f"    duration: 10m\n    gateway_id: {dark}\n")
    sub = Subscriber(broker, topic_prefix)
    t0 = time.monotonic()
    cfg = RunConfig(deployment=dep_file, mqtt_url=broker.url, prefix=topic_prefix, seed=5,
                    duration=3.5, qos=1, processes=1, device_connections=0, scenario=scen)
    run(cfg)
    got = sub.settle(0, timeout=1)
    sub.close()
    per_gw: dict[str, list[bytes]] = defaultdict(list)
    for topic, data in got:
        tp = topics.parse(topic, topic_prefix)
        if tp.kind == topics.GATEWAY:
            per_gw[tp.ident].append(data)
    assert dark not in per_gw
    assert set(per_gw) == set(gws) - {dark}
    wall = time.monotonic() - t0
    # ~1 message per second per gateway at least (3.5 s run): heartbeats fill the gaps
    assert min(len(v) for v in per_gw.values()) >= 3, wall
    assert sum(v.count(b"{}") for v in per_gw.values()) > 0


def test_publisher_waits_for_a_broker_that_is_not_up_yet(broker_own, caplog):
    broker_own.kill()
    pub = Publisher(broker_own.url, "late-starter")
    connecting = threading.Thread(target=pub.connect, daemon=True)
    connecting.start()
    assert wait_for(lambda: "not reachable" in caplog.text, 15)  # retrying, and says so
    assert connecting.is_alive()
    broker_own.start()
    connecting.join(30)
    assert not connecting.is_alive() and pub.client.is_connected()
    pub.close()



def test_sim_run_exits_nonzero_when_a_publishing_worker_dies(tmp_path, broker):
    """A worker killed mid-run: the summary still prints and names it, the exit code is 1."""
    import json
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    import paho.mqtt.client as mqtt

    from tests.support import wait_until

    dep = tmp_path / "d.parquet"
    cli = [sys.executable, "-m", "citypulse"]
    subprocess.run(cli + ["sim", "deploy", "--sensors", "40", "--out", str(dep)], check=True,
                   capture_output=True)
    seen = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    sub.on_message = lambda *_a: seen.append(1)
    sub.connect("127.0.0.1", int(broker.url.rsplit(":", 1)[1]))
    prefix = f"dies{os.getpid()}"  # the shared broker holds other tests' retained messages
    sub.subscribe(f"{prefix}/#")
    sub.loop_start()
    p = subprocess.Popen(cli + ["sim", "run", "--deployment", str(dep), "--duration", "8",
                                "--mqtt-url", broker.url, "--prefix", prefix, "--processes",
                                "1", "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: seen, timeout=60)  # the worker is publishing

        def workers() -> list[int]:
            kids = [c for t in Path(f"/proc/{p.pid}/task").iterdir()
                    for c in (t / "children").read_text().split()]
            return [int(c) for c in kids if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]

        found = wait_until(workers, timeout=30, what="the publishing worker")
        assert len(found) == 1
        os.kill(found[0], signal.SIGKILL)
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
        sub.loop_stop()
    assert p.returncode == 1, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["failed_workers"] and summary["publish_errors"] >= 1
    assert "publishing worker(s) failed" in err
