"""The fast paths read indexes and rollups, never a scan of raw (EXPLAIN of the real SQL).

The Reader records every statement a request runs; each is EXPLAINed with sequential scans
disabled, which only penalises them: a statement with no usable index still shows a
``Seq Scan`` and fails here.  The tables are small, so without that penalty the planner may
prefer a scan for speed, not for lack of an index.
"""

from __future__ import annotations

from datetime import timedelta

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
    """Scans of raw: its daily partitions (postgres) or its chunks (TimescaleDB), not the
    appends above them (``ChunkAppend on raw`` is TimescaleDB's ordered append)."""
    return [ln for ln in plan.splitlines()
            if (" on raw_p" in ln or " on raw " in ln or " on _hyper_" in ln)
            and "Append" not in ln]


def scanned_parts(plan: str) -> set[str]:
    """The partitions or chunks of raw a plan reads (a bitmap index scan names the
    partition's index, raw_pYYYYMMDD_..., not the partition)."""
    names = {s.split(" on ")[1].split()[0] for s in raw_scans(plan)}
    return {n if n.startswith("_hyper_") else n[:len("raw_pYYYYMMDD")] for n in names}


def window_parts(db: str, lo, hi=None) -> set[str]:
    """The partitions or chunks of raw holding times in [lo, hi) (both backends)."""
    with psycopg.connect(db, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('timescaledb_information.chunks')").fetchone()[0]:
            return {r[0] for r in conn.execute(
                "SELECT chunk_name FROM timescaledb_information.chunks WHERE hypertable_name"
                " = 'raw' AND range_end > %s AND (%s::timestamptz IS NULL OR range_start < %s)",
                (lo, hi, hi))}
        days = {r[0] for r in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'citypulse.raw'::regclass")}
        return {d for d in days if f"raw_p{lo:%Y%m%d}" <= d
                and (hi is None or d < f"raw_p{hi - timedelta(microseconds=1):%Y%m%d}~")}


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
    count_plan = next(p for p in explained if "rollup_1m" in p or "_materialized_hypertable" in p)
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
    # partition pruning: only the window's day (postgres) or chunk (TimescaleDB) is read
    assert scanned_parts(plan) == window_parts(sta_env.db, DAY.replace(hour=6),
                                               DAY.replace(hour=7)), plan


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
