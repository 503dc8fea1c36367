"""Flows, densities, congestion, time travel, trips and OD from hand-made readings."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
import shapely

from twin import build_city
from twin.flows import aggregate
from twin.incremental import run_pass
from twin.placement import place_sensors
from twin.state import aggregation_lag_s, od, segments_at, zones_at
from twin.trips import rebuild_trips

S = timedelta(seconds=1)
M = timedelta(minutes=1)
SEG = "N2.04>N2.06"  # ring 2, free flow 50 km/h


@pytest.fixture
def placed(twin_db):
    city = build_city()
    db = twin_db
    ids = {
        "a": db.sensor("tr-a", "traffic", *city.point_along(SEG, 0.3)),
        "b": db.sensor("tr-b", "traffic", *city.point_along(SEG, 0.7)),
    }
    zs = city.zones.set_index("zone_id").geometry
    for name, zone in (("p", "Z2-03"), ("q", "Z2-03"), ("r", "Z2-04")):
        pt = zs[zone].representative_point()
        ids[name] = db.sensor(f"pc-{name}", "people", pt.x + 0.0001 * (name == "q"), pt.y)
    place_sensors(db.conn, city)
    return db, ids, city


def test_segment_and_zone_minute_values(placed, t0):
    db, ids, city = placed
    a, b, p, q, r = (ids[k] for k in "abpqr")
    db.readings([
        (t0, a, {"vehicle_count": 10, "speed_kmh": 30, "occupancy_pct": 20}),
        (t0 + 30 * S, a, {"vehicle_count": 14, "speed_kmh": 40, "occupancy_pct": 30}),
        (t0 + 10 * S, b, {"vehicle_count": 8, "speed_kmh": 50, "occupancy_pct": 10}),
        (t0, p, {"people_count": 100, "entries": 5, "exits": 2}),
        (t0 + 30 * S, p, {"people_count": 120, "entries": 7, "exits": 1}),
        (t0 + 5 * S, q, {"people_count": 300, "entries": 10, "exits": 20}),
        (t0 + 5 * S, r, {"people_count": 50, "entries": 30, "exits": 10}),
    ])
    res = aggregate(db.conn, t0, t0 + M, city)
    assert res.segment_rows == 1 and res.zone_rows == 3
    # vehicles present: the segment (ring 2, 30 degrees, inner lane, in Z2-02) holds
    # flow / speed x length = 960 / 40 x 2 pi 2.4 km / 12
    veh = db.conn.execute("SELECT zone_id, vehicles FROM citypulse.twin_zone_1m "
                          "WHERE vehicles IS NOT NULL").fetchall()
    assert veh == [("Z2-02", pytest.approx(960 / 40 * 2 * math.pi * 2.4 / 12, rel=1e-3))]
    row = db.conn.execute(
        "SELECT sensors, vehicles, flow_veh_h, speed_kmh, occupancy_pct, congestion "
        "FROM citypulse.twin_segment_1m WHERE segment_id = %s AND bucket = %s",
        (SEG, t0)).fetchone()
    # vehicles per sensor: a 24, b 8 -> 16 per minute = 960 veh/h; speeds 30, 40, 50
    assert row == pytest.approx((2, 16.0, 960.0, 40.0, 20.0, 0.2))
    area = city.zones.set_index("zone_id").area_m2["Z2-03"]
    z = db.conn.execute(
        "SELECT counters, people, density_per_1000m2, entries, exits FROM citypulse.twin_zone_1m "
        "WHERE zone_id = 'Z2-03' AND bucket = %s", (t0,)).fetchone()
    assert z == pytest.approx((2, 410.0, 410_000.0 / area, 22.0, 23.0))
    # Z2-03 lost 1 net, its neighbour Z2-04 gained 20 (the only gaining neighbour): 1 moves
    flows = db.conn.execute("SELECT zone_a, zone_b, persons FROM citypulse.twin_zone_flow_1m"
                            ).fetchall()
    assert flows == [("Z2-03", "Z2-04", pytest.approx(1.0))]

    st = segments_at(db.conn, at=t0 + 2 * M)
    seg = {x["segment_id"]: x for x in st.rows}
    assert st.bucket == t0
    assert seg[SEG]["flow_veh_h"] == pytest.approx(960.0)
    assert seg[SEG]["congestion"] == pytest.approx(0.2)
    assert seg[SEG]["volume_capacity"] == pytest.approx(960.0 / 5400.0)
    assert seg["N2.06>N2.04"]["flow_veh_h"] is None
    assert len(st.rows) == len(city.segments)
    zst = zones_at(db.conn, at=t0 + 2 * M)
    zone = {x["zone_id"]: x for x in zst.rows}
    assert zone["Z2-03"]["people"] == pytest.approx(410.0)
    assert zone["Z2-04"]["net_in"] == pytest.approx(20.0)
    assert zst.extra["flows"] == [{"from": "Z2-03", "to": "Z2-04", "persons": pytest.approx(1.0)}]
    # before the minute had ended there was no state
    assert segments_at(db.conn, at=t0 + 30 * S).bucket is None


def test_state_at_past_time_is_what_was_true_then(placed, t0):
    db, ids, city = placed
    a = ids["a"]
    db.readings([
        (t0, a, {"vehicle_count": 10, "speed_kmh": 40, "occupancy_pct": 10}),
        (t0 + 8 * M, a, {"vehicle_count": 20, "speed_kmh": 20, "occupancy_pct": 50}),
    ])
    aggregate(db.conn, t0, t0 + 10 * M, city)
    then = {x["segment_id"]: x for x in segments_at(db.conn, at=t0 + 2 * M).rows}[SEG]
    assert then["speed_kmh"] == pytest.approx(40.0) and then["flow_veh_h"] == pytest.approx(600)
    assert then["speed_trend"] is None
    later = {x["segment_id"]: x for x in segments_at(db.conn, at=t0 + 9 * M).rows}[SEG]
    assert later["speed_kmh"] == pytest.approx(20.0)
    assert later["congestion"] == pytest.approx(0.6)
    assert later["speed_trend"] == pytest.approx(-20.0)
    assert later["flow_trend"] == pytest.approx(600.0)
    # re-aggregating (late data path) changes nothing
    aggregate(db.conn, t0, t0 + 10 * M, city)
    again = {x["segment_id"]: x for x in segments_at(db.conn, at=t0 + 2 * M).rows}[SEG]
    assert again == then


def _drive(city, a, b, start, db, truck, speed=60.0):
    """Readings along the lane path a -> b, one position per minute (~1 km at 60 km/h)."""
    geoms = city.metric("segments").set_index("segment_id").geometry
    line = shapely.LineString([c for s in city.path_segments(a, b) for c in geoms[s].coords])
    n = int(line.length // 1000) + 1
    items = []
    from citypulse.city.dishui import _TO_WGS
    for i in range(n):
        p = line.interpolate(i * 1000.0)
        lon, lat = _TO_WGS.transform(p.x, p.y)
        for k in (0, 30):
            items.append((start + i * M + k * S, truck,
                          {"lon": lon, "lat": lat, "speed_kmh": speed, "load_kg": 1000}))
    return items, start + n * M


def _dwell(city, node, start, minutes, truck):
    n = city.graph.nodes[node]
    return [(start + i * M + k * S, truck,
             {"lon": n["lon"], "lat": n["lat"], "speed_kmh": 0, "load_kg": 1000})
            for i in range(minutes) for k in (0, 30)], start + minutes * M


def test_trips_and_od_from_truck_trace(twin_db, t0):
    city = build_city()
    db = twin_db
    truck = db.sensor("trk-1", "logistics", 121.95, 30.88)
    place_sensors(db.conn, city)
    port, park, plant = city.depots["Z-PORT"], city.depots["Z4-04"], city.depots["Z4-01"]
    items, t = _dwell(city, port, t0, 5, truck)
    more, t = _drive(city, port, park, t, db, truck)
    items += more
    park_arrival = t
    more, t = _dwell(city, park, t, 6, truck)
    items += more
    leave_park = t
    more, t = _drive(city, park, plant, t, db, truck, speed=50)
    items += more
    more, t = _dwell(city, plant, t, 4, truck)
    items += more
    db.readings(items)
    aggregate(db.conn, t0, t + M, city)
    out = rebuild_trips(db.conn, t0 - M, t + M, city)
    assert out["trips"] == 2
    trips = db.conn.execute("SELECT origin_zone, dest_zone, depart, arrive FROM "
                            "citypulse.twin_trips ORDER BY depart").fetchall()
    assert [(o, d) for o, d, *_ in trips] == [("Z-PORT", "Z4-04"), ("Z4-04", "Z4-01")]
    # depart = when the truck left the zone: the first drive minute is still on the port's
    # 450 m access road, the next (1 km on) is on the radial beside the logistics park
    assert trips[0][2] == t0 + 6 * M
    assert t0 + 6 * M <= trips[0][3] <= park_arrival
    # leaving the park: access road (500 m) then ring 3 along the park (outer lane): 2 minutes
    assert trips[1][2] == leave_park + 2 * M
    visits = db.conn.execute("SELECT zone_id, entered, dwell_s FROM citypulse.twin_truck_visits "
                             "WHERE zone_id = 'Z-PORT'").fetchall()
    assert visits == [("Z-PORT", t0, 360.0)]
    hour = od(db.conn, t0 + 10 * M)
    assert hour.extra["matrix"] == {"Z-PORT": {"Z4-04": 1}, "Z4-04": {"Z4-01": 1}}
    assert hour.extra["total"] == 2 and hour.extra["trend"] == 2
    # trucks per zone: during the port dwell the truck is in the port
    z = {x["zone_id"]: x for x in zones_at(db.conn, at=t0 + 3 * M).rows}
    assert z["Z-PORT"]["trucks"] == 1 and z["Z4-04"]["trucks"] == 0
    # rebuilding again gives the same trips
    rebuild_trips(db.conn, t0 - M, t + M, city)
    assert db.conn.execute("SELECT count(*) FROM citypulse.twin_trips").fetchone()[0] == 2
    # fed in small windows, as the worker does, visits and trips come out the same
    q_visits = "SELECT sensor, zone_id, entered, exited, dwell_s FROM " \
               "citypulse.twin_truck_visits ORDER BY entered"
    q_trips = "SELECT * FROM citypulse.twin_trips ORDER BY depart"
    whole = (db.conn.execute(q_visits).fetchall(), db.conn.execute(q_trips).fetchall())
    db.conn.execute("TRUNCATE citypulse.twin_truck_visits, citypulse.twin_trips")
    w = t0 - M
    while w < t + M:
        rebuild_trips(db.conn, w, w + 3 * M, city, since=t0 - M)
        w += 3 * M
    assert (db.conn.execute(q_visits).fetchall(), db.conn.execute(q_trips).fetchall()) == whole


def test_run_pass_keeps_up(placed, t0):
    db, ids, city = placed
    now = t0 + 30 * M
    db.readings([(t0 + 27 * M + i * 10 * S, ids["a"],
                  {"vehicle_count": 5, "speed_kmh": 45, "occupancy_pct": 5}) for i in range(6)])
    out = run_pass(db.conn, db.store, db.settings, now=now, settle_s=5)
    assert out["segment_rows"] == 1
    assert aggregation_lag_s(db.conn, now=now) == pytest.approx(5 + 30, abs=31)
    st = segments_at(db.conn, at=now)
    seg = {x["segment_id"]: x for x in st.rows}[SEG]
    assert seg["flow_veh_h"] == pytest.approx(1800.0)
    # a reading 4 minutes late is picked up by the next pass (5-minute recompute window)
    db.readings([(t0 + 27 * M + 55 * S, ids["b"],
                  {"vehicle_count": 10, "speed_kmh": 45, "occupancy_pct": 5})])
    run_pass(db.conn, db.store, db.settings, now=now + M, settle_s=5)
    seg = {x["segment_id"]: x for x in segments_at(db.conn, at=now).rows}[SEG]
    assert seg["flow_veh_h"] == pytest.approx(60 * (30 + 10) / 2)


def test_expire_drops_old_truck_minutes(twin_db):
    from datetime import UTC, datetime

    from twin.incremental import expire

    old = datetime.now(UTC) - timedelta(days=30)
    db = twin_db
    db.conn.execute("INSERT INTO citypulse.twin_truck_1m (bucket, sensor, lon, lat) VALUES "
                    "(%s, 1, 121.9, 30.9), (now(), 1, 121.9, 30.9)", (old,))
    assert expire(db.conn, db.settings, datetime.now(UTC)) == 1
    assert db.conn.execute("SELECT count(*) FROM citypulse.twin_truck_1m").fetchone()[0] == 1


def test_gate_counters(twin_db, t0):
    city = build_city()
    db = twin_db
    gate = city.gates.iloc[0]
    zone = city.zones.set_index("zone_id").geometry[gate.zone_id]
    # 5 m from the gate, inside the station (towards its centre)
    c = zone.centroid
    f = 5.0 / 70.0
    lon, lat = gate.lon + (c.x - gate.lon) * f, gate.lat + (c.y - gate.lat) * f
    sid = db.sensor("pc-gate", "people", lon, lat)
    far = db.sensor("pc-mid", "people", c.x, c.y)
    place_sensors(db.conn, city)
    got = dict(db.conn.execute("SELECT sensor, gate_id FROM citypulse.sensor_placement"
                               ).fetchall())
    assert got == {sid: gate.gate_id, far: None}
    db.readings([(t0, sid, {"people_count": 40, "entries": 12, "exits": 3}),
                 (t0 + 20 * S, sid, {"people_count": 45, "entries": 8, "exits": 4})])
    aggregate(db.conn, t0, t0 + M, city)
    zst = zones_at(db.conn, at=t0 + M)
    assert zst.extra["gates"] == [{"gate_id": gate.gate_id, "zone_id": gate.zone_id,
                                   "entries": 20.0, "exits": 7.0}]
