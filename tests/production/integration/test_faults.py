"""Fault suite: real broker, real PostgreSQL, real collector processes, seq accounting.

Each case runs a steady gateway load (per-sensor ``seq`` 0, 1, 2, ...) through a private
Mosquitto into ``citypulse ingest`` (a subprocess) and a private PostgreSQL, injects one
fault under load, and ends by checking that every reading sent is stored exactly once.
The publisher behaves like a real device: it keeps what the broker has not acknowledged
and sends it again after a reconnect.  Figures per case (sent, stored, duplicates dropped,
lost, recovery time) are printed as JSON and appended to ``test-artifacts/faults.jsonl``.

Run with ``make test-faults`` (``pytest -m slow --run-slow``).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from citypulse import schema
from citypulse.settings import Settings
from citypulse.stack import free_port
from citypulse.wire import topics as wt
from ingest import registry
from tests.support import hold, wait_for, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
GATEWAYS = 20
PER_GATEWAY = 10
MSG_RATE = 100.0  # messages/s -> 1,000 readings/s


class Publisher:
    """Gateway load with device semantics: unacknowledged messages are sent again."""

    def __init__(self, port: int, prefix: str, groups: list[tuple[str, list[str]]],
                 msg_rate: float) -> None:
        self.prefix, self.groups, self.msg_rate = prefix, groups, msg_rate
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                             client_id=f"faultpub-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5)
        self.c.reconnect_delay_set(0.1, 1.0)
        self.c.max_inflight_messages_set(200)
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = lambda *a: self.connected.clear()
        self.c.on_publish = self._on_publish
        self.connected = threading.Event()
        self.lock = threading.Lock()  # publisher side only, never taken in paho callbacks
        self.acks: collections.deque[int] = collections.deque()
        self.unacked: dict[int, tuple[str, bytes, int]] = {}  # key -> topic, payload, readings
        self.mid2key: dict[int, int] = {}
        self.resend_all = False
        self.seq = {s: 0 for _, chunk in groups for s in chunk}
        self.last_ts = dict.fromkeys(self.seq, 0)
        self.readings = self.messages = self.republished = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.c.connect_async("127.0.0.1", port, keepalive=10)
        self.c.loop_start()

    def _on_connect(self, client, userdata, flags, rc, props) -> None:
        if not rc.is_failure:
            self.resend_all = True
            self.connected.set()

    def _on_publish(self, client, userdata, mid, rc, props) -> None:
        # paho holds its own locks here: only hand the ack over (deque append is atomic)
        if not rc.is_failure:
            self.acks.append(mid)

    def _apply_acks(self) -> None:
        while self.acks:
            key = self.mid2key.pop(self.acks.popleft(), None)
            if key is not None:
                self.unacked.pop(key, None)

    def _send(self, key: int) -> None:
        topic, payload, _ = self.unacked[key]
        info = self.c.publish(topic, payload, qos=1)
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            self.mid2key[info.mid] = key

    def _make(self, gi: int) -> tuple[str, bytes, int]:
        gw, chunk = self.groups[gi]
        now = int(time.time() * 1000)
        doc = {}
        for sid in chunk:
            t = self.last_ts[sid] = max(now, self.last_ts[sid] + 1)
            doc[sid] = [{"ts": t, "seq": self.seq[sid],
                         "values": {"vehicle_count": 7, "speed_kmh": 42.5}}]
            self.seq[sid] += 1
        return wt.gateway(gw, self.prefix), orjson.dumps(doc), len(chunk)

    def _run(self) -> None:
        t0 = time.monotonic()
        gi = 0
        while not self._stop.is_set():
            due = int((time.monotonic() - t0) * self.msg_rate) - self.messages
            with self.lock:
                self._apply_acks()
                for _ in range(max(0, due)):  # devices keep measuring while the broker is away
                    key = self.messages
                    self.unacked[key] = self._make(gi)
                    gi = (gi + 1) % len(self.groups)
                    self.messages += 1
                    self.readings += self.unacked[key][2]
                    if self.connected.is_set() and not self.resend_all:
                        self._send(key)
                self._resend_if_reconnected()
            self._stop.wait(0.01)  # the load's pace (devices measure on a clock), not a wait

    def _resend_if_reconnected(self) -> None:
        if self.resend_all and self.connected.is_set():
            self.resend_all = False
            self.mid2key.clear()
            for key in sorted(self.unacked):
                self._send(key)
                self.republished += 1

    def stop(self, timeout: float = 120.0) -> None:
        """Stop measuring; wait until the broker has acknowledged everything."""
        self._stop.set()
        self._thread.join(10)
        last_resend = [time.monotonic()]

        def all_acked() -> bool:
            with self.lock:
                self._apply_acks()
                if not self.unacked:
                    return True
                self._resend_if_reconnected()
                if time.monotonic() - last_resend[0] > 15 and self.connected.is_set():
                    self.resend_all = True  # acks lost in a reconnect: send again
                    last_resend[0] = time.monotonic()
                return False
        wait_for(all_acked, timeout)  # run_case asserts nothing is left unacknowledged
        self.c.disconnect()
        self.c.loop_stop()

    def acked_through(self, n: int) -> bool:
        """The broker has acknowledged every message before the ``n``-th and more after it."""
        with self.lock:
            self._apply_acks()
            return self.messages > n + MSG_RATE / 10 and all(k >= n for k in self.unacked)

    def start(self) -> Publisher:
        """Start producing load."""
        assert self.connected.wait(10), "publisher could not connect"
        self._thread.start()
        return self


def scrape(port: int) -> dict[str, float]:
    """Sum of each metric sample of the collector (labels folded)."""
    out: dict[str, float] = {}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as r:
        for fam in text_string_to_metric_families(r.read().decode()):
            for s in fam.samples:
                out[s.name] = out.get(s.name, 0.0) + s.value
    return out


@dataclass
class Stack:
    """A private broker + database + one collector process, for one fault case."""

    pg: object
    mq: object
    tmp: Path
    spool_max_bytes: int = 512 * 1024 * 1024
    prefix: str = field(default_factory=lambda: "f" + uuid.uuid4().hex[:8])
    client_id: str = field(default_factory=lambda: "fc-" + uuid.uuid4().hex[:6])
    share: str | None = None
    proc: subprocess.Popen | None = None
    pub: Publisher | None = None  # the case's load, for faults that wait on it
    metrics_port: int = 0
    starts: int = 0
    t_back: float = 0.0  # set by a fault when the failed part is running again
    dup_dropped: float = 0.0  # summed over the collector's lives (last scrape of each)
    _last: dict = field(default_factory=dict)

    def setup(self) -> list[tuple[str, list[str]]]:
        settings = Settings(database_url=self.pg.url, mqtt_url=self.mq.url,
                            topic_prefix=self.prefix)
        groups = [(f"{self.prefix}-gw{g:03d}",
                   [f"{self.prefix}-s{g:03d}-{i:02d}" for i in range(PER_GATEWAY)])
                  for g in range(GATEWAYS)]
        with psycopg.connect(self.pg.url, autocommit=True) as conn:
            schema.Store.open(conn, settings)
            registry.upsert(conn, [registry.SensorRecord(s, "traffic", 121.93, 30.9, gw, "{}")
                                   for gw, chunk in groups for s in chunk])
        return groups

    def start_collector(self, wait: bool = True) -> None:
        self.metrics_port = free_port()
        env = dict(os.environ, CITYPULSE_DATABASE_URL=self.pg.url,
                   CITYPULSE_MQTT_URL=self.mq.url, CITYPULSE_TOPIC_PREFIX=self.prefix,
                   CITYPULSE_DEVICE_RATE_LIMIT="1000000",
                   CITYPULSE_SPOOL_DIR=str(self.tmp / "spool"),
                   CITYPULSE_SPOOL_MAX_BYTES=str(self.spool_max_bytes),
                   CITYPULSE_BATCH_MAX_MS="100")
        log = open(self.tmp / f"collector-{self.client_id}-{self.starts}.log", "wb")
        self.starts += 1
        share = ["--share", self.share] if self.share else []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "citypulse", "ingest", "--metrics-port",
             str(self.metrics_port), "--client-id", self.client_id, *share],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp)
        self._last = {}
        if wait:
            self.wait_connected()

    def wait_connected(self, timeout: float = 60.0) -> None:
        """Until the collector is connected and subscribed (its gauge is set on SUBACK)."""
        def ready() -> bool:
            assert self.proc.poll() is None, self.log_tail()
            with contextlib.suppress(OSError):
                return self.metrics().get("citypulse_ingest_mqtt_connected") == 1
            return False
        if not wait_for(ready, timeout, every=0.2):
            raise AssertionError("collector did not connect:\n" + self.log_tail())

    def wait_disconnected(self, timeout: float = 30.0) -> None:
        """Until the collector reports its broker connection lost."""
        def lost() -> bool:
            with contextlib.suppress(OSError):
                return self.metrics().get("citypulse_ingest_mqtt_connected") == 0
            return False
        assert wait_for(lost, timeout, every=0.1), "collector did not notice:\n" + self.log_tail()

    def metrics(self) -> dict[str, float]:
        m = scrape(self.metrics_port)
        self._last = m
        return m

    def spooled(self) -> bool:
        """The collector has readings in its on-disk spool."""
        with contextlib.suppress(OSError):
            return self.metrics().get("citypulse_ingest_spool_bytes", 0) > 0
        return False

    def logged(self, text: str) -> bool:
        """The current collector's log has ``text``."""
        return text in (self.tmp / f"collector-{self.client_id}-{self.starts - 1}.log").read_text(
            errors="replace")

    def log_tail(self) -> str:
        logs = sorted(self.tmp.glob("collector-*.log"))
        return "\n".join(p.read_text(errors="replace")[-2000:] for p in logs[-2:])

    def _retire(self) -> None:
        self.dup_dropped += self._last.get("citypulse_ingest_duplicates_total", 0.0)
        self._last = {}

    def kill_collector(self) -> None:
        with contextlib.suppress(OSError):
            self.metrics()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._retire()

    def stop_collector(self) -> None:
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.metrics()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._retire()

    def start_pg(self) -> None:
        """Start the database again.  Another pytest session may have reset the shared
        /tmp/pytest-of-<user> to 0700 meanwhile, so restore the postgres user's path first."""
        if os.geteuid() == 0:
            for parent in self.pg.data_dir.parents:
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    os.chmod(parent, mode | 0o011)
        self.pg.start()
        self.t_back = time.monotonic()

    def counts(self) -> tuple[int, int]:
        """(rows stored, distinct (sensor, seq) stored) of this case's sensors."""
        with psycopg.connect(self.pg.url, autocommit=True, connect_timeout=3) as conn:
            return conn.execute(
                "SELECT count(*), count(DISTINCT (r.sensor, r.seq)) FROM citypulse.raw r "
                "JOIN citypulse.sensors s ON s.id = r.sensor WHERE s.sensor_id LIKE %s",
                (self.prefix + "-%",)).fetchone()

    def stored(self) -> int:
        """Distinct readings stored (0 while the database is away)."""
        with contextlib.suppress(psycopg.OperationalError):
            return self.counts()[1]
        return 0

    def wait_stored(self, target: int, timeout: float = 120.0) -> float:
        """Seconds until ``target`` distinct readings are stored (inf on timeout)."""
        t0 = time.monotonic()
        if wait_for(lambda: self.stored() >= target, timeout, every=0.25):
            return time.monotonic() - t0
        return float("inf")


@pytest.fixture
def stack(pg_own, broker_own, tmp_path):
    s = Stack(pg_own, broker_own, tmp_path)
    yield s
    if s.proc and s.proc.poll() is None:
        s.proc.kill()
        s.proc.wait(10)


def run_case(name: str, stack: Stack, fault, warmup: float = 3.0, after: float = 4.0,
             extra: dict | None = None, before=None, drain_timeout: float = 120.0) -> dict:
    """Load -> fault (returns when the failed part is back) -> load -> drain -> account.

    ``warmup`` and ``after``: seconds' worth of load (readings sent, and before the fault
    some of them stored) around the fault, waited for as conditions.
    """
    groups = stack.setup()
    if stack.proc is None:
        stack.start_collector()
    if before:
        before(stack)
    pub = stack.pub = Publisher(stack.mq.port, stack.prefix, groups, MSG_RATE).start()
    per_s = MSG_RATE * PER_GATEWAY  # readings per second of load
    wait_until(lambda: pub.readings >= warmup * per_s and stack.stored() > 0, 120,
               "the load to flow end to end before the fault", every=0.25)
    fault(stack)
    now = time.monotonic()
    back = stack.t_back or now  # when the failed part was running again
    sent_at_clear = pub.readings
    recovery = now - back + stack.wait_stored(sent_at_clear, timeout=120)
    wait_until(lambda: pub.readings >= sent_at_clear + after * per_s, 120,
               "the load to go on after the fault", every=0.1)
    pub.stop()
    stored_wait = stack.wait_stored(pub.readings, timeout=drain_timeout)
    rows, distinct = stack.counts()
    stack.stop_collector()
    result = {
        "case": name, "sent": pub.readings, "messages": pub.messages,
        "republished_by_device": pub.republished, "unacked_by_broker": len(pub.unacked),
        "stored": rows, "distinct": distinct, "duplicates_stored": rows - distinct,
        "duplicates_dropped": int(stack.dup_dropped), "lost": pub.readings - distinct,
        "recovery_s": round(recovery, 2), "final_drain_s": round(stored_wait, 2),
        **(extra or {}),
    }
    print(json.dumps(result))
    out = ROOT / "test-artifacts"
    out.mkdir(exist_ok=True)
    with open(out / "faults.jsonl", "a") as f:
        f.write(json.dumps(result) + "\n")
    assert result["unacked_by_broker"] == 0, result
    assert result["lost"] == 0, (result, stack.log_tail())
    assert result["duplicates_stored"] == 0, result
    assert rows == pub.readings, result
    return result


def test_broker_restart(stack):
    def fault(s: Stack) -> None:
        s.mq.stop()   # SIGTERM: the broker saves its sessions and queued messages
        m0 = s.pub.messages
        s.wait_disconnected()
        wait_until(lambda: not s.pub.connected.is_set() and s.pub.messages > m0 + MSG_RATE,
                   30, "both ends to notice and a second of load to wait at the devices")
        s.mq.start()  # same port, same persistence file
        s.t_back = time.monotonic()
    run_case("broker_restart", stack, fault)


def test_database_outage_30s(stack):
    def fault(s: Stack) -> None:
        s.pg.stop()
        hold(30, "the database outage under test lasts 30 s")
        s.start_pg()
    r = run_case("database_outage_30s", stack, fault)
    assert r["sent"] >= 30 * MSG_RATE * PER_GATEWAY  # the load really ran through the outage


def test_collector_sigkill(stack):
    def fault(s: Stack) -> None:
        s.kill_collector()
        m0 = s.pub.messages
        wait_until(lambda: s.pub.acked_through(m0), 30,
                   "the broker to take load for the dead collector's session", every=0.02)
        s.start_collector(wait=False)  # same client id: the broker redelivers the unacked
        s.t_back = time.monotonic()
        s.wait_connected()
    run_case("collector_sigkill", stack, fault)


def test_collector_restart_during_database_outage(stack):
    def fault(s: Stack) -> None:
        s.pg.stop()
        wait_until(s.spooled, 60, "the collector to spool to disk (and ack)", every=0.2)
        s.kill_collector()   # crash with a spool on disk
        s.start_collector(wait=False)  # comes back while the database is still down
        wait_until(lambda: s.logged("event=db_unreachable"), 60,
                   "the restarted collector to wait for the database", every=0.2)
        s.start_pg()
        s.wait_connected()
    run_case("collector_restart_during_db_outage", stack, fault)


def test_full_spool_holds_at_broker(stack):
    stack.spool_max_bytes = 64 * 1024
    seen: dict[str, float] = {"spool_max": 0.0, "queue_max": 0.0}

    def fault(s: Stack) -> None:
        s.pg.stop()
        m0 = s.pub.readings

        def held_at_broker() -> bool:  # the spool is full and the broker holds the rest
            with contextlib.suppress(OSError):
                m = s.metrics()
                seen["spool_max"] = max(seen["spool_max"], m.get("citypulse_ingest_spool_bytes", 0))
                seen["queue_max"] = max(seen["queue_max"],
                                        m.get("citypulse_ingest_queue_messages", 0))
            # 15 s of load came in while the database was away
            return s.pub.readings >= m0 + 15 * MSG_RATE * PER_GATEWAY and seen["queue_max"] > 0
        wait_for(held_at_broker, 120, every=0.5)
        s.start_pg()
    run_case("full_spool", stack, fault, extra=seen)  # seen is filled in during the fault
    assert seen["spool_max"] > 0
    # the spool stopped near its bound (one batch may cross it) while 15 s of load came in:
    # the rest waited at the broker, unacknowledged
    assert seen["spool_max"] < 64 * 1024 + 512 * 1024
    assert seen["queue_max"] > 0


def test_slow_database(stack):
    def fault(s: Stack) -> None:
        with psycopg.connect(s.pg.url) as conn:
            conn.execute("LOCK TABLE citypulse.raw IN ACCESS EXCLUSIVE MODE")
            conn.execute("SELECT pg_sleep(8)")  # every write waits 8 s
            conn.rollback()
        s.t_back = time.monotonic()
    run_case("slow_database_lock_8s", stack, fault)


@pytest.mark.xfail(strict=True, reason=(
    "Mosquitto keeps routing a share group's messages to a member's offline persistent "
    "session; a collector leaving for good (scale-down, container recreated with a new "
    "hostname-derived client id) must UNSUBSCRIBE, drain, then DISCONNECT with session "
    "expiry 0, else its share of the load waits in a dead session until expiry"))
def test_scale_down_one_of_two_shared_collectors(stack):
    stack.share = "collectors"
    other = Stack(stack.pg, stack.mq, stack.tmp, prefix=stack.prefix, share="collectors",
                  client_id=stack.client_id + "-b")

    def before(s: Stack) -> None:
        other.start_collector()

    def fault(s: Stack) -> None:
        other.stop_collector()  # SIGTERM: docker compose up --scale collector=1
        s.t_back = time.monotonic()
    try:
        run_case("scale_down_2_to_1", stack, fault, before=before, drain_timeout=20)
    finally:
        if other.proc and other.proc.poll() is None:
            other.proc.kill()
