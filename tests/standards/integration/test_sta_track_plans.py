"""Tracks (HistoricalLocations, Locations of trackers) read raw's indexes, never a scan of raw.

As in test_sta_plans: every statement a request runs is EXPLAINed, here with sequential
scans *and* sorts penalised, so a plan that still scans raw or sorts what it read of raw
has no other way to answer.  Each raw scan must be an index scan on ``sensor``; a sort may
only see raw rows through a bounded probe (a ``LIMIT`` or an ``EXISTS``: a sub-plan or a
semi/anti join, which stop at the first row).
"""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from standards.sta.engine import Reader
from standards.sta.routes import resolve
from tests.standards.integration.conftest import DAY
from tests.standards.integration.test_sta_plans import raw_scans, scanned_parts, window_parts

pytestmark = pytest.mark.integration


def plans(db: str, path: str, **args) -> tuple[dict, list[str]]:
    with psycopg.connect(db, autocommit=True) as conn:
        for off in ("enable_seqscan", "enable_sort", "jit"):
            conn.execute(f"SET {off} = off")
        reader = Reader(conn)
        answer = resolve(reader, path, list(args.items()), "B", "B/" + path)
        return answer.body, ["\n".join(r[0] for r in conn.execute("EXPLAIN " + sql, params))
                             for sql, params in reader.executed]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" ->"))


def sorted_raw(plan: str) -> list[str]:
    """Raw scans below a full ``Sort`` node that no bound (``Limit``, ``EXISTS``) stops."""
    lines, bad = plan.splitlines(), []
    for i, ln in enumerate(lines):
        if not ln.strip(" ->").startswith("Sort  ("):
            continue
        depth, bound = _indent(ln), None
        for sub in lines[i + 1:]:
            d = _indent(sub)
            if d <= depth:
                break
            if bound is not None and d <= bound:
                bound = None
            head = sub.strip(" ->")
            if bound is None and (head.startswith(("Limit", "SubPlan"))
                                  or " Semi Join" in head or " Anti Join" in head):
                bound = d
            elif bound is None and sub in raw_scans(sub):
                bad.append(sub)
    return bad


def check(explained: list[str]) -> list[str]:
    """Every raw scan is an index scan on sensor; none is sorted unbounded; the raw plans."""
    on_raw = [p for p in explained if raw_scans(p)]
    assert on_raw, explained
    for plan in on_raw:
        assert "Seq Scan" not in plan, plan
        assert all("Index" in s or "Bitmap Heap" in s for s in raw_scans(plan)), plan
        # an index condition on sensor, or (a key's 2 ms, on TimescaleDB's time index) a
        # bounded time window
        conds = [ln for ln in plan.splitlines() if "Cond: (" in ln and (
            "sensor" in ln or ('"time" >=' in ln and '"time" <' in ln))]
        assert conds, plan
        assert sorted_raw(plan) == [], plan
    return on_raw


def test_the_first_page_of_all_tracks_merges_index_scans(sta_env):
    body, explained = plans(sta_env.db, "HistoricalLocations")
    assert len(body["value"]) == 100 and "@iot.nextLink" in body
    (plan,) = check(explained)
    # the trackers' rows come in index order (sensor, time): a merge, read only as far
    # as the page goes
    # (TimescaleDB: a ChunkAppend in order, the chunks' scans ordered by their index)
    assert ("Merge Append" in plan or "Order: " in plan) and "Index Cond: (sensor = ANY" in plan, plan


def test_latest_points_of_a_tracker_are_a_backward_index_scan(sta_env):
    body, explained = plans(sta_env.db, f"Things({sta_env.tracker})/HistoricalLocations",
                            **{"$orderby": "time desc", "$top": "5", "$count": "true"})
    assert len(body["value"]) == 5 and body["@iot.count"] > 200
    page, count = check(explained)
    assert "Index Scan Backward" in page, page
    assert f"sensor = '{sta_env.tracker}'" in page, page


def test_time_window_of_a_tracker_prunes_partitions(sta_env):
    lo = DAY + timedelta(hours=9)
    body, explained = plans(sta_env.db, "HistoricalLocations", **{
        "$filter": f"time ge {lo:%Y-%m-%dT%H:%M:%SZ} and Thing/@iot.id eq {sta_env.tracker}",
        "$count": "true", "$top": "1000"})
    assert body["@iot.count"] == len(body["value"]) > 50
    for plan in check(explained):
        parts = scanned_parts(plan)
        assert parts and parts <= window_parts(sta_env.db, lo), plan
        assert '"time" >=' in plan


def test_expansions_and_keys_are_probes(sta_env):
    trk = sta_env.tracker
    _body, explained = plans(sta_env.db, "Things", **{
        "$filter": "properties/kind eq 'logistics'",
        "$expand": "HistoricalLocations($top=2;$orderby=time desc),Locations"})
    check(explained)
    (latest,) = plans(sta_env.db, f"Things({trk})/Locations")[0]["value"]
    first = plans(sta_env.db, f"Things({trk})/HistoricalLocations",
                  **{"$top": "1", "$skip": "1"})[0]["value"][0]  # after the registration
    assert first["@iot.id"] >> 42 == latest["@iot.id"] >> 42 == trk
    for key in (latest["@iot.id"], first["@iot.id"]):
        for path in (f"HistoricalLocations({key})", f"HistoricalLocations({key})/Locations",
                     f"HistoricalLocations({key})/Thing", f"Locations({key})",
                     f"Locations({key})/HistoricalLocations", f"Locations({key})/Things"):
            body, explained = plans(sta_env.db, path, **{"$expand": "Locations"}
                                    if path == f"HistoricalLocations({key})" else {})
            assert body.get("value", [body]), path  # each names something
            check(explained)
    body, explained = plans(sta_env.db, "Locations")
    assert len(body["value"]) == 100
    check(explained)


def test_the_check_sees_a_sort_of_raw(sta_env):
    """All tracks newest first have no index order (raw is indexed per sensor): it sorts
    every tracker's rows -- the check above must notice (documented in standard-apis.md)."""
    _body, explained = plans(sta_env.db, "HistoricalLocations", **{"$orderby": "time desc"})
    assert any(sorted_raw(p) for p in explained)


def test_filter_through_the_track_reads_the_index(sta_env):
    body, explained = plans(sta_env.db, "Things", **{
        "$filter": f"HistoricalLocations/time lt {DAY:%Y-%m-%d}T08:01:00Z"})
    assert [t["@iot.id"] for t in body["value"]] == [sta_env.tracker]
    (plan,) = check(explained)
    # a semi-join or a probe per Thing, either way raw's index on the trackers and time
    assert '"time" < ' in plan and "sensor = " in plan, plan
