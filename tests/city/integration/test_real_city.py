"""A real city end to end: its map, an asset registry of positions only, MQTT, one alert each.

Parametrised over the imported OpenStreetMap extract of Helsinki and the generated Dishui
Lake city: ``city import`` (Helsinki) -> ``registry load`` of ``sensor_id,kind,lon,lat``
(placement reports the sensor outside the city) -> readings published over MQTT to a real
collector -> the alert engine on the active city: a speed collapse on one segment is one
segment alert, a crowd over the limit one zone alert, a silent group one zone alert.
"""

from __future__ import annotations

import csv
import json
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import shapely
from typer.testing import CliRunner

from analytics import lifecycle
from analytics.engine import Engine
from analytics.rules import load_rules
from citypulse.city import build_city
from citypulse.cli import app
from citypulse.wire import topics as wt
from tests.ingest.conftest import Publisher, wait_until


def _zone_point(city, exclude=(), min_area=3000.0, max_area=2e6):
    """A point well inside a zone of a people-bearing type, away from gates and roads."""
    zm = city.metric("zones")
    for z in zm.itertuples(index=False):
        if (z.zone_id in exclude or z.zone_type in ("lake", "green") or
                not min_area < z.geometry.area < max_area):
            continue
        inner = z.geometry.buffer(-40.0)
        if inner.is_empty:
            continue
        p = shapely.point_on_surface(inner)
        lon, lat = city.to_wgs(p.x, p.y)
        return z.zone_id, float(lon), float(lat)
    raise AssertionError("no suitable zone")


def _fleet(city):
    """Positions only: 3 loops on one segment, 2 counters in zone A, 3 gas detectors in zone
    B, one station outside the city."""
    segs = city.segments[(city.segments["length_m"] > 80)]
    seg = segs.sort_values("length_m").iloc[len(segs) // 2]
    rows = [(f"loop-{i}", "traffic", *city.point_along(seg.segment_id, f))
            for i, f in enumerate((0.3, 0.5, 0.7))]
    za, lon, lat = _zone_point(city)
    rows += [(f"count-{i}", "people", lon + i * 1e-5, lat) for i in range(2)]
    zb, lon, lat = _zone_point(city, exclude={za})
    rows += [(f"gas-{i}", "gas", lon + i * 1e-5, lat) for i in range(3)]
    rows += [("far-1", "noise", 0.5, 0.5)]
    return seg.segment_id, za, zb, rows


@pytest.fixture
def cfg(settings):
    return settings.model_copy(update={"batch_max_ms": 50, "metrics_port": 0,
                                       "device_rate_limit": 1e6})


@pytest.mark.parametrize("which", ["helsinki", "dishui"])
def test_positions_only_registry_gives_one_alert_per_incident(
        which, cfg, broker, start_collector, helsinki_pbf, tmp_path):
    runner = CliRunner()
    url = cfg.database_url
    if which == "helsinki":
        res = runner.invoke(app, ["city", "import", helsinki_pbf, "--name", "helsinki",
                                  "--database-url", url])
        assert res.exit_code == 0, res.output
        assert json.loads(res.output[res.output.index("{"):])["version"] == 1
    res = runner.invoke(app, ["city", "show", "--database-url", url])
    assert json.loads(res.output)["name"] == which
    with psycopg.connect(url, autocommit=True) as conn:
        from citypulse.city import active

        city = active(conn)
    assert city.name == which and (which == "dishui") == (city is build_city())
    seg, za, zb, rows = _fleet(city)
    reg = tmp_path / "assets.csv"
    with reg.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sensor_id", "kind", "lon", "lat"])
        w.writerows(rows)
    res = runner.invoke(app, ["registry", "load", str(reg), "--database-url", url])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["placed"] == len(rows) - 1
    assert out["unplaceable_sensors"] == [{"sensor_id": "far-1", "kind": "noise",
                                           "reason": "outside every zone of the city"}]
    with psycopg.connect(url, autocommit=True) as conn:
        placed = dict(conn.execute(
            "SELECT s.sensor_id, (p.segment_id, p.zone_id, p.role, p.direction) "
            "FROM citypulse.sensor_placement p JOIN citypulse.sensors s ON s.id = p.sensor"
        ).fetchall())
    direction = city.segments.set_index("segment_id").loc[seg, "direction"]
    assert {placed[f"loop-{i}"] for i in range(3)} == {(seg, placed["loop-0"][1], "loop",
                                                        direction)}
    assert {placed[f"count-{i}"][1:3] for i in range(2)} == {(za, "zone")}
    assert {placed[f"gas-{i}"][1] for i in range(3)} == {zb}

    start_collector(cfg)
    pub = Publisher(int(broker.url.rsplit(":", 1)[1]), client_id="pub-" + uuid.uuid4().hex[:6])
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=400)
    sent = 0
    with psycopg.connect(url, autocommit=True) as conn:
        eng = Engine(conn, load_rules())
        for s in range(0, 240, 5):
            ts = int((t0 + timedelta(seconds=s)).timestamp() * 1000)
            now = []
            if s % 10 == 0:
                bad = s >= 150
                now += [(f"loop-{i}", {"vehicle_count": 12, "speed_kmh": 6.0 if bad else 52.0,
                                       "occupancy_pct": 92.0 if bad else 10.0})
                        for i in range(3)]
            if s % 15 == 0:
                now += [(f"count-{i}", {"people_count": 40_000 if s >= 150 else 50,
                                        "entries": 5, "exits": 5}) for i in range(2)]
                now += [("far-1", {"laeq_db": 55})]  # unplaced, yet its readings count
                if s < 60:  # the gas group falls silent at 60 s
                    now += [(f"gas-{i}", {"ch4_lel_pct": 1, "co_ppm": 1}) for i in range(3)]
            for sid, values in now:
                pub.publish(wt.telemetry(sid, cfg.topic_prefix),
                            {"ts": ts, "seq": s, "values": values})
            sent += len(now)
            assert wait_until(lambda n=sent: conn.execute(
                "SELECT count(*) FROM citypulse.raw").fetchone()[0] >= n, 20)
            eng.tick(t0 + timedelta(seconds=s + 1))
        open_alerts = lifecycle.list_alerts(conn, open_only=True)
        every = lifecycle.list_alerts(conn, open_only=False)
    pub.close()
    got = sorted((a.entity_kind, a.entity_id, a.rule) for a in open_alerts)
    assert [g[:2] for g in got] == sorted([("segment", seg), ("zone", za), ("zone", zb)]), got
    by_place = {g[:2]: g[2] for g in got}
    assert by_place[("segment", seg)] in ("congestion", "speed_collapse")
    assert by_place[("zone", za)] == "crowd_density"
    assert by_place[("zone", zb)] == "sensor_offline"
    offline = next(a for a in open_alerts if a.rule == "sensor_offline")
    assert sorted(offline.scope) == ["gas-0", "gas-1", "gas-2"]
    assert not [a for a in every if a.entity_kind == "sensor"]  # nothing per sensor


def test_switching_the_city_moves_placement(db, helsinki):
    """`city use` re-places every sensor on the new city (the twin's placement pass)."""
    from citypulse.city import store
    from citypulse.city.placement import place_sensors

    city, report = helsinki
    version = store.save(db, city, source="Helsinki.osm.pbf", report=report)
    seg = city.segments.iloc[10]
    lon, lat = city.point_along(seg.segment_id, 0.5)
    db.execute("INSERT INTO citypulse.sensors (sensor_id, kind, lon, lat) VALUES "
               "('t-1', 'traffic', %s, %s)", (lon, lat))
    rep = place_sensors(db)  # on the default, generated city: far from Helsinki
    assert rep.unplaceable == (("t-1", "traffic", "outside every zone of the city"),)
    assert store.use(db, "helsinki") == ("helsinki", version)
    assert place_sensors(db).unplaceable == ()
    row = db.execute("SELECT segment_id, city_model FROM citypulse.sensor_placement").fetchone()
    assert row == (seg.segment_id, f"helsinki@{version}")
    assert db.execute("SELECT count(*) FROM citypulse.twin_segments").fetchone()[0] == len(
        city.segments)
    assert [r["name"] for r in store.list_models(db) if r["active"]] == ["helsinki"]
    assert [e[0] for e in db.execute(
        "SELECT action FROM citypulse.city_events ORDER BY at")] == ["import", "use"]
    with pytest.raises(store.CityError, match="no city model 'atlantis'"):
        store.use(db, "atlantis")
