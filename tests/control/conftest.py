"""Control fixtures: registered actuators, a commands worker thread, simulated actuators."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg.types.json import Jsonb

from citypulse.catalogue import MAX_SLOTS, device_kind
from citypulse.schema import Store
from control import records
from tests.support import wait_until


def wait_for(fn, timeout: float = 30.0, what: str = "condition"):
    """Poll ``fn`` until it returns something truthy; fail after ``timeout`` seconds."""
    return wait_until(fn, timeout, what)


class Fleet:
    """Registers devices and writes their readings straight into the store."""

    def __init__(self, conn, settings):
        self.conn = conn
        self.store = Store.open(conn, settings, migrate_now=False)
        self.ids: dict[str, int] = {}
        self.kinds: dict[str, str] = {}

    def add(self, device_id, kind, zone_id="z1", segment_id=None, lon=121.93, lat=30.90):
        props = {"zone_id": zone_id, **({"segment_id": segment_id} if segment_id else {})}
        row = self.conn.execute(
            "INSERT INTO citypulse.sensors (sensor_id, kind, lon, lat, props) "
            "VALUES (%s, %s, %s, %s, %s) RETURNING id",
            (device_id, kind, lon, lat, Jsonb(props))).fetchone()
        self.ids[device_id], self.kinds[device_id] = row[0], kind
        return {"device_id": device_id, "kind": kind, "zone_id": zone_id,
                "segment_id": segment_id}

    def reading(self, device_id, **values):
        k = device_kind(self.kinds[device_id])
        v = [None] * MAX_SLOTS
        for m, x in values.items():
            v[k.slot_of[m]] = float(x)
        self.store.write_rows(self.conn, [(datetime.now(UTC), self.ids[device_id], None, *v)])


@pytest.fixture
def ctl_settings(settings):
    return settings.model_copy(update={"commands_retry_after_s": 3.0, "commands_tick_s": 0.1})


@pytest.fixture
def fleet(db, ctl_settings):
    return Fleet(db, ctl_settings)


@pytest.fixture
def worker(ctl_settings):
    from control.worker import Worker

    w = Worker(ctl_settings)
    stop = threading.Event()
    t = threading.Thread(target=w.run, args=(stop,), daemon=True)
    t.start()
    w.link.wait_connected(10)
    yield w
    stop.set()
    t.join(10)


@pytest.fixture
def sims(ctl_settings):
    """Factory of simulated actuators (closed at teardown)."""
    from device_sim.actuators import ActuatorSim

    made = []

    def make(devices, **kw):
        kw.setdefault("delay_s", (0.1, 0.3))
        kw.setdefault("telemetry", False)
        s = ActuatorSim(kw.pop("url", ctl_settings.mqtt_url), ctl_settings.topic_prefix,
                        devices, **kw)
        assert s.session.wait_connected(10)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def status_of(db_url: str, cid) -> str:
    with psycopg.connect(db_url, autocommit=True) as c:
        return records.get(c, cid)["status"]


def wait_status(db, cid, status: str, timeout: float = 30.0) -> dict:
    return wait_for(lambda: (r := records.get(db, cid)) and r["status"] == status and r,
                    timeout, f"command {cid} to be {status} "
                             f"(is {records.get(db, cid)['status']})")
