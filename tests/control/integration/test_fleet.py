"""Fleet commands: targets from the twin's placement; the abort threshold."""

from __future__ import annotations

from collections import Counter

from control import api, records
from device_sim.actuators_cli import deploy_actuators
from twin.placement import place_sensors

from ..conftest import wait_for

OP = {"by": "ana", "role": "operator"}


def test_zone_fleet_reaches_exactly_the_zones_pumps(db, ctl_settings, fleet, worker, sims):
    frame = deploy_actuators(seed=3, pumps_per_zone=2, sign_every=40, signal_every=40)
    with db.cursor() as cur:  # positions only: where they are is the twin's business
        cur.executemany("INSERT INTO citypulse.sensors (sensor_id, kind, lon, lat) "
                        "VALUES (%s, %s, %s, %s)",
                        frame.select("device_id", "kind", "lon", "lat").rows())
    report = place_sensors(db)
    assert report.in_zone >= 2
    zone, n = db.execute(
        "SELECT p.zone_id, count(*) FROM citypulse.sensors s JOIN citypulse.sensor_placement p "
        "ON p.sensor = s.id WHERE s.kind = 'pump' AND p.zone_id IS NOT NULL GROUP BY 1 "
        "ORDER BY 2 DESC, 1 LIMIT 1").fetchone()
    expected = sorted(r[0] for r in db.execute(
        "SELECT s.sensor_id FROM citypulse.sensors s JOIN citypulse.sensor_placement p ON "
        "p.sensor = s.id WHERE s.kind = 'pump' AND p.zone_id = %s", (zone,)))
    assert len(expected) == n >= 2
    pumps = frame.filter(frame["kind"] == "pump").to_dicts()
    sims(pumps)
    for p in expected:
        fleet.ids[p] = db.execute("SELECT id FROM citypulse.sensors WHERE sensor_id = %s",
                                  (p,)).fetchone()[0]
        fleet.kinds[p] = "pump"
        fleet.reading(p, sump_level_m=1.0)
    out = api.fleet(db, ctl_settings, "pump", "start", {"zone": zone}, **OP)
    assert sorted(out["devices"]) == expected
    wait_for(lambda: all(r["status"] == "succeeded"
                         for r in records.listing(db, fleet_id=out["fleet_id"])), 30,
             "the zone's pumps to start")
    reached = db.execute("SELECT device_id FROM citypulse.commands WHERE status = 'succeeded'"
                         ).fetchall()
    assert sorted(r[0] for r in reached) == expected


def test_fleet_aborts_past_its_failure_threshold(db, ctl_settings, fleet, worker, sims):
    devs = [fleet.add(f"vms-a{i}", "sign", zone_id="za") for i in range(6)]
    sims(devs, faulty={"vms-a0", "vms-a1"})
    out = api.fleet(db, ctl_settings, "sign", "show", {"zone": "za"},
                    params={"text": "DETOUR"}, rate_per_s=0.5, abort_pct=20, **OP)
    wait_for(lambda: db.execute("SELECT status FROM citypulse.command_fleets WHERE id = %s",
                                (out["fleet_id"],)).fetchone()[0] == "aborted", 60,
             "the fleet to abort")
    rows = records.listing(db, fleet_id=out["fleet_id"])
    by = Counter(r["status"] for r in rows)
    assert by["failed"] >= 2 and by["cancelled"] >= 1, by
    assert all("fleet aborted" in r["reason"] for r in rows if r["status"] == "cancelled")


def test_fleet_preconditions_are_checked_per_pump_in_one_pass(db, ctl_settings, fleet):
    for p in ("pmp-wet", "pmp-dry", "pmp-silent", "pmp-dried"):
        fleet.add(p, "pump", zone_id="zp")
    fleet.reading("pmp-wet", sump_level_m=1.5)
    fleet.reading("pmp-dry", sump_level_m=0.02)
    fleet.reading("pmp-dried", sump_level_m=1.5)
    fleet.reading("pmp-dried", sump_level_m=0.01)  # the latest reading counts
    out = api.fleet(db, ctl_settings, "pump", "start", {"zone": "zp"}, **OP)
    got = {r["device_id"]: (r["status"], r["reason"])
           for r in records.listing(db, fleet_id=out["fleet_id"])}
    assert got["pmp-wet"] == ("queued", "")
    assert got["pmp-dry"][0] == got["pmp-dried"][0] == "rejected"
    assert "sump dry: pmp-dry reports 0.02 m" in got["pmp-dry"][1]
    assert "sump dry: pmp-dried reports 0.01 m" in got["pmp-dried"][1]
    assert got["pmp-silent"][0] == "rejected" and "no sump level from pmp-silent" in \
        got["pmp-silent"][1]
    assert out["by_status"] == {"queued": 1, "rejected": 3}
