"""Rate of change and the robust z-score anomaly rule (same time of day, from the rollups)."""

from __future__ import annotations

from datetime import timedelta

from analytics import lifecycle
from analytics.engine import Engine
from analytics.rules import parse_rules


def test_rate_of_change_fires_on_a_fast_rise_only(db, feed, city_model):
    rules = parse_rules("""
rules:
  - {id: rising, type: rate_of_change, severity: warning, kind: water, metric: level_m,
     rise_per_min: 0.05, over_s: 120, clear_for_s: 30}
""")
    feed.sensor("slow", "water", zone_id="Z2-01")
    feed.sensor("fast", "water", zone_id="Z2-02")
    eng = Engine(db, rules, city=city_model)
    for s in range(0, 200, 10):
        feed.write(s, {"slow": {"level_m": 1.0 + 0.01 * s / 60},
                       "fast": {"level_m": 1.0 + (0.2 * (s - 60) / 60 if s > 60 else 0)}})
        eng.tick(feed.at(s + 1))
    alerts = lifecycle.list_alerts(db, open_only=False)
    assert [(a.rule, a.entity_id) for a in alerts] == [("rising", "fast")]
    assert alerts[0].evidence["rate_per_min"] > 0.05
    # level steady again: the rate falls under half the limit -> resolved after clear_for_s
    top = 1.0 + 0.2 * (190 - 60) / 60
    for s in range(200, 400, 10):
        feed.write(s, {"fast": {"level_m": top}, "slow": {"level_m": 1.05}})
        eng.tick(feed.at(s + 1))
    assert lifecycle.get_alert(db, alerts[0].id).status == "resolved"


def test_anomaly_robust_z_score_against_same_time_of_day(db, feed, city_model):
    rules = parse_rules("""
rules:
  - {id: odd_speed, type: anomaly, severity: info, kind: traffic, metric: speed_kmh,
     z_above: 6, clear_z: 3, days: 7, window_min: 15, min_samples: 20}
""")
    feed.sensor("trf-a", "traffic", segment_id="x")
    feed.sensor("trf-b", "traffic", segment_id="y")
    rows = []  # a week of history at this time of day, one reading a minute, rolled up
    for d in range(1, 7):
        for m in range(-10, 11, 2):
            b = (feed.at(0) - timedelta(days=d, minutes=m)).replace(second=0)
            for sid, mean in (("trf-a", 50.0), ("trf-b", 30.0)):
                x = mean + ((d * 7 + m) % 5 - 2)  # 48..52 / 28..32
                rows.append((b, feed.ids[sid], None, None, x, *[None] * 6))
    feed.store.write_rows(db, rows)
    feed.store.refresh_rollups(db, settle_s=-3600)
    eng = Engine(db, rules, city=city_model)
    feed.write(0, {"trf-a": {"speed_kmh": 8.0}, "trf-b": {"speed_kmh": 31.0}})
    eng.tick(feed.at(1))
    alerts = lifecycle.list_alerts(db, open_only=False)
    assert [(a.rule, a.entity_id) for a in alerts] == [("odd_speed", "trf-a")]
    ev = alerts[0].evidence
    assert ev["median"] == 50.0 and ev["z"] < -6 and ev["samples"] >= 20
