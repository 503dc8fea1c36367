"""One open alert per incident: a higher rule's alert supersedes a lower one for the same place.

crowd_density supersedes crowd_surge (same zone: the inflow jump that led to it); congestion
supersedes speed_collapse (the collapsed segment is in the queue's scope).  Real PostgreSQL
through the ``feed`` fixture.
"""

from __future__ import annotations

import pytest

from analytics import lifecycle
from analytics.engine import Engine
from analytics.rules import load_rules


def _engine(db, city_model):
    return Engine(db, load_rules(), city=city_model)


def _open(db):
    return [(a.rule, a.entity_kind, a.entity_id) for a in lifecycle.list_alerts(db)]


def _by_rule(db, rule):
    return [a for a in lifecycle.list_alerts(db, open_only=False) if a.rule == rule]


def _chain(city_model):
    """Three consecutive model segments up2 -> up1 -> head, plus one elsewhere."""
    head = next(s for s in sorted(city_model.segments) if city_model.pred[s]
                and city_model.succ[s] and city_model.pred[city_model.pred[s][0]])
    up1 = city_model.pred[head][0]
    up2 = city_model.pred[up1][0]
    near = {head, up1, up2, *city_model.succ[head], *city_model.pred[up2],
            *city_model.pred[up1], *city_model.pred[head]}
    other = next(s for s in sorted(city_model.segments) if s not in near
                 and not any(x in near for x in city_model.succ[s] + city_model.pred[s]))
    return head, up1, up2, other


def _radars(feed, city_model, segs):
    """One radar per segment; returns write(s, {segment: share of free flow}) (others 0.9)."""
    for sid in segs:
        feed.sensor("trf-" + sid, "traffic", segment_id=sid)
    ffs = {sid: city_model.segments[sid]["free_flow_kmh"] for sid in segs}

    def traffic(s, speeds):
        feed.write(s, {"trf-" + sid: {"speed_kmh": ffs[sid] * speeds.get(sid, 0.9),
                                      "occupancy_pct": 60 if sid in speeds else 10}
                       for sid in segs})
    return traffic


def test_density_supersedes_the_surge_of_the_same_zone(db, feed, city_model):
    zone = next(z for z, v in city_model.zones.items() if v["zone_type"] == "plaza")
    feed.sensor("ppl-1", "people", zone_id=zone, role="zone")  # covers 10,000 m2
    eng = _engine(db, city_model)
    for s in range(0, 60, 15):  # 0.3 persons/m2, 30 people walking in per 15 s: calm
        feed.write(s, {"ppl-1": {"people_count": 3000, "entries": 30}})
        eng.tick(feed.at(s + 1))
    assert _open(db) == []
    # the inflow jumps 30x (a surge's leading indicator) while the count has barely risen
    feed.write(60, {"ppl-1": {"people_count": 3300, "entries": 900}})
    eng.tick(feed.at(61))
    assert _open(db) == [("crowd_surge", "zone", zone)]
    surge = _by_rule(db, "crowd_surge")[0]
    # the crowd keeps coming: 2 persons/m2 for longer than the density rule's for_s (10 s)
    for s in range(64, 90, 2):
        feed.write(s, {"ppl-1": {"people_count": 20000, "entries": 900}})
        eng.tick(feed.at(s + 0.5))
        assert len(lifecycle.list_alerts(db)) == 1  # never two open alerts for the zone
    assert _open(db) == [("crowd_density", "zone", zone)]
    density = _by_rule(db, "crowd_density")[0]
    assert density.started_at == surge.started_at == feed.at(60)
    assert density.evidence["supersedes"] == [
        {"id": surge.id, "rule": "crowd_surge", "started": surge.started_at.isoformat()}]
    assert lifecycle.get_alert(db, surge.id).status == "resolved"
    trail = lifecycle.events(db, surge.id)
    assert [e["action"] for e in trail] == ["open", "supersede"]
    assert trail[-1]["note"] == f"superseded by alert {density.id} (crowd_density)"
    # evidence refreshes (every 30 s) keep the history; the surge does not come back
    for s in range(90, 160, 5):
        feed.write(s, {"ppl-1": {"people_count": 20000 + s, "entries": 900}})
        eng.tick(feed.at(s + 0.5))
    density = lifecycle.get_alert(db, density.id)
    assert density.evidence["supersedes"][0]["id"] == surge.id
    assert density.evidence["people"] > 20000  # refreshed
    assert _open(db) == [("crowd_density", "zone", zone)]


def test_congestion_supersedes_the_speed_collapse_in_its_queue(db, feed, city_model):
    head, up1, up2, _ = _chain(city_model)
    segs = (head, up1, up2)
    traffic = _radars(feed, city_model, segs)
    eng = _engine(db, city_model)

    for s in range(0, 60, 10):
        traffic(s, {})
        eng.tick(feed.at(s + 1))
    # an accident on up1: its speed collapses at once (speed_collapse, warning) ...
    traffic(60, {up1: 0.1})
    eng.tick(feed.at(61))
    assert _open(db) == [("speed_collapse", "segment", up1)]
    collapse = _by_rule(db, "speed_collapse")[0]
    # ... and the queue grows back from it (up2 slows, no collapse); congestion after 10 s
    for s in range(62, 90, 2):
        traffic(s, {up1: 0.1, up2: 0.38})
        eng.tick(feed.at(s + 0.5))
        assert len(lifecycle.list_alerts(db)) == 1
    assert _open(db) == [("congestion", "segment", up1)]
    cong = _by_rule(db, "congestion")[0]
    assert up1 in cong.scope
    assert cong.started_at == collapse.started_at == feed.at(60)
    assert [x["id"] for x in cong.evidence["supersedes"]] == [collapse.id]
    assert [e["action"] for e in lifecycle.events(db, collapse.id)] == ["open", "supersede"]


@pytest.mark.parametrize("where", ["inside the queue", "just upstream of the queue"])
def test_open_congestion_suppresses_collapse_on_covered_segments_only(db, feed, city_model,
                                                                      where):
    """A collapse in the queue, or just upstream (the queue growing), is the same incident."""
    head, up1, up2, other = _chain(city_model)
    up3 = city_model.pred[up2][0]
    hit = up1 if where == "inside the queue" else up3
    traffic = _radars(feed, city_model, (head, up1, up2, up3, other))
    eng = _engine(db, city_model)

    # slow congestion on the chain (speed 30% of free flow: index 0.7, no sudden collapse)
    for s in range(0, 90, 5):
        traffic(s, {head: 0.3, up1: 0.3, up2: 0.3})
        eng.tick(feed.at(s + 1))
    assert _open(db) == [("congestion", "segment", head)]
    assert sorted(_by_rule(db, "congestion")[0].scope) == sorted([head, up1, up2])
    # a collapse (0.3 -> 0.02 of free flow) there, and one on another road
    traffic(90, {head: 0.3, up1: 0.3, up2: 0.3, hit: 0.02, other: 0.02})
    for s in (91, 93, 95):
        eng.tick(feed.at(s))
    assert sorted(_open(db)) == [("congestion", "segment", head),
                                 ("speed_collapse", "segment", other)]
    assert [a.entity_id for a in _by_rule(db, "speed_collapse")] == [other]
