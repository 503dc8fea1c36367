"""Placement of known points on real PostgreSQL."""

from __future__ import annotations

from twin import build_city
from twin.placement import place_sensors


def test_known_points(twin_db):
    city = build_city()
    db = twin_db
    lon, lat = city.point_along("N2.04>N2.06", 0.5)
    on_road = db.sensor("tr-1", "traffic", lon, lat)
    back = city.point_along("N2.06>N2.04", 0.5)
    other_dir = db.sensor("tr-2", "traffic", *back)
    in_lake = db.sensor("tr-lake", "traffic", 121.929, 30.899)
    c = city.zones.set_index("zone_id").geometry["Z2-03"].representative_point()
    people = db.sensor("pc-1", "people", c.x, c.y)
    buoy = db.sensor("water-1", "water", 121.93, 30.90)
    outside = db.sensor("pc-far", "people", 122.5, 30.5)
    truck = db.sensor("trk-1", "logistics", 121.95, 30.88)

    rep = place_sensors(db.conn, city)
    assert rep.examined == 7
    assert rep.on_segment == 2 and rep.in_zone == 2 and rep.mobile == 1
    assert sorted(u[0] for u in rep.unplaceable) == ["pc-far", "tr-lake"]
    rows = {r[0]: r[1:] for r in db.conn.execute(
        "SELECT sensor, placement, status, segment_id, zone_id, reason "
        "FROM citypulse.sensor_placement")}
    assert rows[on_road][:3] == ("segment", "placed", "N2.04>N2.06")
    assert rows[other_dir][2] == "N2.06>N2.04"
    assert rows[in_lake][1] == "unplaceable" and "no road segment" in rows[in_lake][4]
    assert rows[people] == ("zone", "placed", None, "Z2-03", "")
    assert rows[buoy][3] == "Z-LAKE"
    assert rows[outside][1:] == ("unplaceable", None, None, "outside every zone of the city")
    assert rows[truck][:2] == ("vehicle", "mobile")

    # a second pass only looks at new or moved sensors
    assert place_sensors(db.conn, city).examined == 0
    db.conn.execute("UPDATE citypulse.sensors SET lon = %s, lat = %s, updated_at = now() "
                    "WHERE id = %s", (*city.point_along("N1.00>N2.00", 0.5), in_lake))
    rep2 = place_sensors(db.conn, city)
    assert rep2.examined == 1 and rep2.unplaceable == ()
    seg = db.conn.execute("SELECT segment_id FROM citypulse.sensor_placement WHERE sensor = %s",
                          (in_lake,)).fetchone()[0]
    assert seg == "N1.00>N2.00"
    n = db.conn.execute("SELECT count(*) FROM citypulse.twin_segments").fetchone()[0]
    assert n == len(city.segments)
