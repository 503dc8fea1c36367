"""Commands change the simulated city: the effect shows in the sensors' published telemetry.

Real broker, PostgreSQL, commands worker, simulated actuators (``ActuatorSim``) and the
sensor simulator (``device_sim.run`` with ``actuators=``), 60x simulated time: a flash flood
fills a zone's drains; starting that zone's pumps draws them down (not the drains of a zone
whose pump stays off); switching a junction to plan 9 slows its segment's traffic; a sign
changes nothing physical but reports that it shows a message.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import time

import orjson
import paho.mqtt.client as mqtt
import polars as pl
import pytest

from citypulse.wire import topics
from control import api
from device_sim.city import load_city
from device_sim.deploy import deploy, write
from device_sim.effects import SETTLE_S
from device_sim.run import RunConfig, run

from ..conftest import wait_for, wait_status

OP = {"by": "ana", "role": "operator"}
SPEEDUP = 60.0


class Telemetry:
    """Every telemetry message under the prefix: sensor id -> [(wall time, values)]."""

    def __init__(self, port: int, prefix: str) -> None:
        self.got: dict[str, list[tuple[float, dict]]] = {}
        self.lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"tm-{prefix}")
        ready = threading.Event()
        self.c.on_subscribe = lambda *_a: ready.set()
        self.c.on_message = self._on
        self.c.connect("127.0.0.1", port)
        self.c.subscribe(topics.telemetry("+", prefix), 0)
        self.c.loop_start()
        assert ready.wait(10)

    def _on(self, _c, _u, m) -> None:
        body = orjson.loads(m.payload)
        with self.lock:
            self.got.setdefault(m.topic.rsplit("/", 1)[-1], []).append(
                (time.monotonic(), body["values"]))

    def values(self, sids, metric: str, after: float = 0.0, before: float = float("inf")):
        with self.lock:
            return [v[metric] for s in sids for w, v in self.got.get(s, ())
                    if after <= w < before and metric in v]

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


@pytest.fixture(scope="module")
def city_dep():
    city = load_city()
    return deploy(3000, 5, city)


def _setup(dep: pl.DataFrame):
    drains = dep.filter((pl.col("kind") == "water") & (pl.col("role") == "drain"))
    by_zone = drains.group_by("zone_id").len().sort(["len", "zone_id"], descending=True)
    zone, other = by_zone["zone_id"][0], by_zone["zone_id"][1]
    near = drains.filter(pl.col("zone_id") == zone)
    centre = (float(near["lon"].mean()), float(near["lat"].mean()))
    traffic = dep.filter(pl.col("kind") == "traffic")
    seg = traffic.group_by("segment_id").len().sort(["len", "segment_id"],
                                                     descending=True)["segment_id"][0]
    small = pl.concat([drains, traffic.filter(pl.col("segment_id") == seg)])
    return small, zone, other, centre, seg, drains


def test_pumps_signal_plans_and_signs_show_in_the_sims_telemetry(
        db, ctl_settings, fleet, worker, sims, city_dep, tmp_path):
    dep, zone, other, centre, seg, drains = _setup(city_dep)
    far = drains.filter(pl.col("zone_id") == other)
    radius = 1.0 + max(  # the flood covers both zones' drains
        float(((d["lon"] - centre[0]).abs().max() + (d["lat"] - centre[1]).abs().max()) * 111e3)
        for d in (drains.filter(pl.col("zone_id") == zone), far))
    scen = tmp_path / "flood.yaml"
    scen.write_text(f"name: test-flood\nincidents:\n  - type: flash_flood\n    at: 0\n"
                    f"    duration: 12h\n    ramp: 30s\n    near: [{centre[0]}, {centre[1]}]\n"
                    f"    radius_m: {min(radius, 20_000):.0f}\n    lake_rise_m: 0\n")
    devices = [fleet.add("pmp-1", "pump", zone_id=zone), fleet.add("pmp-2", "pump", zone_id=zone),
               fleet.add("pmp-9", "pump", zone_id=other),
               fleet.add("sig-1", "signal", zone_id=zone, segment_id=seg),
               fleet.add("vms-1", "sign", zone_id=zone, segment_id=seg)]
    for p in ("pmp-1", "pmp-2", "pmp-9"):
        fleet.reading(p, sump_level_m=1.5)
    actuators = tmp_path / "actuators.csv"
    pl.DataFrame(devices).rename({"device_id": "sensor_id"}).write_csv(actuators)
    tm = Telemetry(ctl_settings.mqtt.port, ctl_settings.topic_prefix)
    sims(devices, telemetry=True, delay_s=(0.3, 0.8))
    stop = mp.get_context("spawn").Event()
    cfg = RunConfig(deployment=write(dep, tmp_path / "dep.parquet"),
                    mqtt_url=ctl_settings.mqtt_url, prefix=ctl_settings.topic_prefix, seed=5,
                    speedup=SPEEDUP, duration=240, start=time.time(), scenario=scen,
                    gateway=False, processes=1, device_connections=0, tick=0.1,
                    actuators=actuators)
    runner = threading.Thread(target=run, args=(cfg,), kwargs={"stop": stop}, daemon=True)
    runner.start()
    mine = dep.filter((pl.col("zone_id") == zone) & (pl.col("kind") == "water"))["sensor_id"]
    theirs = far["sensor_id"].to_list()
    roads = dep.filter(pl.col("kind") == "traffic")["sensor_id"].to_list()
    try:
        # the flood fills both zones' drains well over 1 m
        assert wait_for(lambda: len([x for x in tm.values(mine, "level_m") if x > 1.3]) >= 5
                        and any(x > 1.3 for x in tm.values(theirs, "level_m")), 60,
                        "flooded drains")
        assert wait_for(lambda: len(tm.values(roads, "speed_kmh")) >= 20, 30, "traffic")
        peak_mine = max(tm.values(mine, "level_m"))
        peak_theirs = max(tm.values(theirs, "level_m"))
        speed_before = tm.values(roads, "speed_kmh")

        for p in ("pmp-1", "pmp-2"):
            rec = api.request(db, ctl_settings, p, "start", {"flow_m3_h": 2000}, **OP)
            wait_status(db, rec["id"], "succeeded")
        started = time.monotonic()
        # two pumps at 2000 m3/h: 2 m/h of simulated time, about 0.033 m a wall second
        assert wait_for(lambda: any(x < peak_mine - 0.3 for x in tm.values(
            mine, "level_m", after=started)), 60, "the pumped zone's drains to fall")
        later = tm.values(theirs, "level_m", after=started)
        assert later and min(later) > peak_theirs - 0.15, (peak_theirs, later)

        rec = api.request(db, ctl_settings, "sig-1", "set_plan", {"plan": 9}, **OP)
        assert rec["status"] == "pending_approval"
        api.approve(db, ctl_settings, str(rec["id"]), by="bo", role="operator")
        wait_status(db, rec["id"], "succeeded")
        settled = time.monotonic() + SETTLE_S / SPEEDUP + 0.5
        mean_before = sum(speed_before) / len(speed_before)
        assert wait_for(lambda: len(tm.values(roads, "speed_kmh", after=settled)) >= 10, 30,
                        "traffic under plan 9")
        after = tm.values(roads, "speed_kmh", after=settled)
        assert sum(after) / len(after) < 0.5 * mean_before, (mean_before, after)

        rec = api.request(db, ctl_settings, "vms-1", "show", {"text": "FLOOD: DETOUR"}, **OP)
        wait_status(db, rec["id"], "succeeded")
        assert wait_for(lambda: 1.0 in tm.values(["vms-1"], "showing"), 20, "the sign's state")
    finally:
        stop.set()
        runner.join(60)
        tm.close()
