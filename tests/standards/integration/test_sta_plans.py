"""The fast paths read indexes and rollups, never a scan of raw (EXPLAIN of the real SQL).

The Reader records every statement a request runs; each is EXPLAINed with sequential scans
disabled, which only penalises them: a statement with no usable index still shows a
``Seq Scan`` and fails here.  The tables are small, so without that penalty the planner may
prefer a scan for speed, not for lack of an index.
"""

from __future__ import annotations

import psycopg
import pytest

from standards.sta.engine import Reader
from standards.sta.routes import resolve
from tests.standards.integration.conftest import DAY

pytestmark = pytest.mark.integration


def plans(db: str, path: str, penalise: tuple[str, ...] = ("seqscan",), **args
          ) -> tuple[dict, list[str]]:
    with psycopg.connect(db, autocommit=True) as conn:
        for what in penalise:
            conn.execute(f"SET enable_{what} = off")
        conn.execute("SET jit = off")
        reader = Reader(conn)
        answer = resolve(reader, path, list(args.items()), "B", "B/" + path)
        out = []
        for sql, params in reader.executed:
            rows = conn.execute("EXPLAIN " + sql, params).fetchall()
            out.append("\n".join(r[0] for r in rows))
        return answer.body, out


def raw_scans(plan: str) -> list[str]:
    return [ln for ln in plan.splitlines() if " on raw_p" in ln or " on raw " in ln]


def test_latest_observation_per_datastream_is_one_index_probe_each(sta_env):
    body, explained = plans(sta_env.db, "Datastreams", **{
        "$top": "200", "$select": "id", "$expand": "Observations($top=1;$orderby=phenomenonTime desc)"})
    assert len(body["value"]) == 200
    obs = [p for p in explained if raw_scans(p)]
    assert obs, explained
    for plan in obs:
        scans = raw_scans(plan)
        assert all("Index" in s or "Bitmap Heap" in s for s in scans), plan
        assert "Seq Scan" not in plan
        assert "Index Cond: (sensor = p.k)" in plan
        # newest first straight off the index: no sort of a datastream's history
        assert "Index Scan Backward" in plan and "Sort" not in plan, plan


def test_count_of_a_day_reads_the_rollup(sta_env):
    ds = sta_env.day_sensor * 8
    body, explained = plans(sta_env.db, f"Datastreams({ds})/Observations", **{
        "$count": "true", "$top": "0",
        "$filter": f"phenomenonTime ge {DAY:%Y-%m-%d}T00:00:00Z and "
                   f"phenomenonTime lt {DAY:%Y-%m-%d}T23:59:30Z"})
    assert body["@iot.count"] > 1440
    count_plan = next(p for p in explained if "rollup_1m" in p)
    assert "Seq Scan" not in count_plan
    for scan in raw_scans(count_plan):
        assert "Index" in scan or "Bitmap Heap" in scan, count_plan
    # the raw part of the count is bounded by time: only the edges and dirty minutes
    conds = [ln for ln in count_plan.splitlines() if "Index Cond" in ln and "sensor =" in ln
             and "bucket" not in ln.split("AND")[1]]
    assert conds and all('"time" >=' in c and '"time" <' in c for c in conds), count_plan


def test_time_window_of_one_datastream_is_an_index_range(sta_env):
    ds = sta_env.day_sensor * 8 + 2
    _body, explained = plans(sta_env.db, "Observations", **{
        "$filter": f"Datastream/@iot.id eq {ds} and phenomenonTime ge "
                   f"{DAY:%Y-%m-%d}T06:00:00Z and phenomenonTime lt {DAY:%Y-%m-%d}T07:00:00Z"})
    (plan,) = explained
    assert "Seq Scan" not in plan
    # partition pruning: only the window's day is read
    # (a bitmap index scan names the partition's index, raw_pYYYYMMDD_..., not the partition)
    assert {s.split(" on ")[1].split()[0][:len("raw_pYYYYMMDD")] for s in raw_scans(plan)} == {
        f"raw_p{DAY:%Y%m%d}"}


def test_a_datastreams_page_can_follow_the_sensors_key(sta_env):
    # ids are sensor row * 8 + slot: ordered by (sensor row, slot) a page can be read along
    # sensors_pkey; ordered by the computed id every datastream is sorted first (1 M of
    # them at 200,000 sensors: 125 ms for the first page).  The few test sensors are
    # cheaper to sort, so sorts are penalised here as scans are above
    body, (plan, *_) = plans(sta_env.db, "Datastreams", ("seqscan", "sort"),
                             **{"$top": "50", "$select": "id"})
    ids = [d["@iot.id"] for d in body["value"]]
    assert len(ids) == 50 and ids == sorted(ids)
    assert "Index Scan using sensors_pkey" in plan, plan
    assert not [ln for ln in plan.splitlines() if "Sort Key" in ln and "* 8" in ln], plan
    # the page's keys are chosen first, then its rows fetched: the same rows as a slice
    later, _ = plans(sta_env.db, "Datastreams", **{"$top": "20", "$skip": "10",
                                                    "$select": "id,name"})
    assert [d["@iot.id"] for d in later["value"]] == ids[10:30]
    assert all(d["name"] for d in later["value"])
