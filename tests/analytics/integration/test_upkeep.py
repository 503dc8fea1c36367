"""Maintenance tickets from the store: one per device or gateway, grouped by zone, with the
evidence and the last good reading; closed when the device recovers."""

from __future__ import annotations

from analytics import lifecycle, upkeep
from citypulse.wire import payload as wp
from ingest.validate import dead_letter


def _dead(db, feed, s: float, reason: str, sensor: str, detail: str, n: int = 1) -> None:
    ms = int(feed.at(s).timestamp() * 1000)
    rows = [dead_letter(ms, "city/v1/telemetry/" + sensor, reason, b"{}", detail, sensor).as_row()
            for _ in range(n)]
    with db.cursor() as cur:
        cur.executemany("INSERT INTO citypulse.dead_letters VALUES (%s, %s, %s, %s, %s, %s)",
                        rows)


def _open(db) -> dict[tuple[str, str], dict]:
    return {(t["kind"], t["device"]): t for t in upkeep.open_tickets(db)}


def test_tickets_per_device_and_gateway_with_evidence_then_closed_on_recovery(db, feed):
    feed.sensor("stuck-1", "noise", zone_id="z-2")
    feed.sensor("batt-1", "noise", zone_id="z-1")
    feed.sensor("fast-1", "noise", zone_id="z-1")
    feed.sensor("bad-1", "noise", zone_id="z-3")
    feed.sensor("will-1", "noise", zone_id="z-3")
    feed.sensor("ok-1", "noise", zone_id="z-1")
    feed.sensor("gw-s1", "traffic", gateway="gw-9", zone_id="z-4")
    feed.sensor("gw-s2", "traffic", gateway="gw-9", zone_id="z-4")
    for i in range(10):
        feed.write(-600 + 30 * i, {"stuck-1": {"laeq_db": 47.5, "rssi_dbm": -80},
                                   "ok-1": {"laeq_db": 40, "rssi_dbm": -80 - i},
                                   "batt-1": {"laeq_db": 40 + i, "battery_pct": 20 - 2 * i}})
    _dead(db, feed, -60, wp.RESTAMPED, "fast-1", "device clock ahead by 240.0 s: stored at "
          "arrival time 1, ts 2", n=3)
    _dead(db, feed, -60, wp.OUT_OF_RANGE, "bad-1", "laeq_db=999 outside [20, 130] dB", n=6)
    _dead(db, feed, -60, wp.OUT_OF_RANGE, "ok-1", "laeq_db=999 outside [20, 130] dB", n=1)
    db.execute("INSERT INTO citypulse.sensor_status VALUES ('will-1', 'offline', %s)",
               (feed.at(-100),))
    lifecycle.open_alert(db, lifecycle.NewAlert(
        "sensor_offline", "gateway", "gw-9", "warning", "gateway offline: gw-9", feed.at(-90),
        scope=("gw-s1", "gw-s2")))
    lifecycle.open_alert(db, lifecycle.NewAlert(
        "sensor_offline", "zone", "z-4", "warning", "sensors offline", feed.at(-90),
        scope=("gw-s1",)))

    counts = upkeep.run(db, feed.at(0))
    got = _open(db)
    assert counts["open"] == len(got) == 6, got
    assert got[("sensor", "stuck-1")]["problems"] == "stuck"
    assert got[("sensor", "stuck-1")]["zone"] == "z-2"
    assert got[("sensor", "stuck-1")]["last_good_at"]  # its last reading, with its values
    assert got[("sensor", "batt-1")]["problems"] == "battery_low"
    assert got[("sensor", "fast-1")]["problems"] == "clock_ahead"
    assert '"skew_s":240.0' in got[("sensor", "fast-1")]["evidence"]
    assert got[("sensor", "bad-1")]["problems"] == "bad_data"
    assert got[("sensor", "will-1")]["problems"] == "silent"
    # the dark gateway: one ticket, its sensors none of their own
    assert got[("gateway", "gw-9")]["problems"] == "silent"
    assert got[("gateway", "gw-9")]["zone"] == "z-4"
    assert ("sensor", "gw-s1") not in got and ("sensor", "ok-1") not in got
    zones = [t["zone"] for t in upkeep.open_tickets(db)]
    assert zones == sorted(zones)
    lines = upkeep.tickets_csv(upkeep.open_tickets(db)).splitlines()
    assert lines[0] == ",".join(upkeep.CSV_FIELDS) and len(lines) == 7

    # the same run again: the same tickets (updated, not duplicated)
    upkeep.run(db, feed.at(1))
    assert db.execute("SELECT count(*) FROM citypulse.maintenance_tickets").fetchone()[0] == 6

    # stuck-1 recovers (varying values), will-1 comes back: their tickets close
    for i in range(10):
        feed.write(30 + 30 * i, {"stuck-1": {"laeq_db": 50 + i, "rssi_dbm": -80}})
    db.execute("UPDATE citypulse.sensor_status SET status = 'online' WHERE sensor_id = 'will-1'")
    later = feed.at(30 + upkeep.WINDOW_S - 100)
    upkeep.run(db, later)
    got = _open(db)
    assert ("sensor", "stuck-1") not in got and ("sensor", "will-1") not in got
    assert ("gateway", "gw-9") in got  # its alert is still open
    (reason,) = db.execute("""SELECT close_reason FROM citypulse.maintenance_tickets
                              WHERE entity_id = 'stuck-1'""").fetchone()
    assert reason == "recovered"
