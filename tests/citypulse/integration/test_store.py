"""The store's one interface on a real PostgreSQL: writes, duplicates, partitions, rollups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from citypulse import schema
from citypulse.settings import Settings

NOW = datetime.now(UTC).replace(second=30, microsecond=0) - timedelta(minutes=5)


def _row(t, sensor, seq, *vals):
    vals = list(vals) + [None] * (8 - len(vals))
    return (t, sensor, seq, *vals)


@pytest.fixture
def store(db, db_url):
    db.execute("INSERT INTO citypulse.sensors (sensor_id, kind, lon, lat) VALUES "
               "('tr-1', 'traffic', 121.93, 30.90), ('fi-1', 'fire', 121.92, 30.89)")
    return schema.Store.open(db, Settings(database_url=db_url), migrate_now=False)


def test_write_then_duplicate_is_dropped_and_new_metric_merged(db, store):
    first = [_row(NOW + timedelta(seconds=i), 1, i, 10.0, 40.0) for i in range(100)]
    assert store.write_rows(db, first) == schema.WriteResult(100, 0, 0)
    # a redelivery of 10 of them, plus 5 of them carrying a metric not stored yet
    again = [_row(NOW + timedelta(seconds=i), 1, i, 99.0, 99.0) for i in range(10)]
    again += [_row(NOW + timedelta(seconds=i), 1, i, 77.0, None, 12.5) for i in range(20, 25)]
    again += [_row(NOW + timedelta(seconds=200), 1, 200, 1.0)]
    assert store.write_rows(db, again) == schema.WriteResult(1, 5, 10)
    rows = dict(db.execute(
        "SELECT metric, count(*) FROM citypulse.readings WHERE sensor_id = 'tr-1' GROUP BY 1"
    ).fetchall())
    assert rows == {"vehicle_count": 101, "speed_kmh": 100, "occupancy_pct": 5}
    # the first value of a (sensor, time, metric) wins
    assert db.execute("SELECT max(v0) FROM citypulse.raw WHERE seq < 100").fetchone()[0] == 10.0


def test_a_batch_repeating_its_own_keys_is_folded_when_the_copy_stops(db, store):
    # the collector hands batches over unchecked: the unique key finds the repeats
    t = [NOW + timedelta(seconds=i) for i in range(4)]
    batch = [_row(t[0], 1, 0, 10.0), _row(t[1], 1, 1, 11.0, 41.0),
             _row(t[0], 1, 0, None, 40.0),        # the rest of a split reading
             _row(t[1], 1, 1, 99.0, 99.0),        # a redelivery inside the batch
             _row(t[2], 1, 2, 12.0)]
    res = store.write_rows(db, batch)
    assert res == schema.WriteResult(3, 0, 2) and res.stored == 3
    got = db.execute("SELECT time, v0, v1 FROM citypulse.raw ORDER BY time").fetchall()
    assert got == [(t[0], 10.0, 40.0), (t[1], 11.0, 41.0), (t[2], 12.0, None)]
    # against stored rows too: one new metric merged, one repeat dropped, one new row
    again = [_row(t[2], 1, 2, None, 42.0), _row(t[2], 1, 2, None, 43.0), _row(t[3], 1, 3, 1.0)]
    assert store.write_rows(db, again) == schema.WriteResult(1, 1, 1)
    assert db.execute("SELECT v1 FROM citypulse.raw WHERE time = %s", (t[2],)).fetchone() == (42.0,)


def test_readings_view_names_metrics_by_kind(db, store):
    store.write_rows(db, [_row(NOW, 2, 1, 3.5, 41.0, 1.0, 80.0)])
    got = db.execute("SELECT sensor_id, kind, metric, value FROM citypulse.readings "
                     "ORDER BY metric").fetchall()
    assert got == [("fi-1", "fire", "alarm", 1.0), ("fi-1", "fire", "battery_pct", 80.0),
                   ("fi-1", "fire", "smoke_pct", 3.5), ("fi-1", "fire", "temperature_c", 41.0)]


def test_rollups_follow_dirty_minutes_including_late_data(db, store):
    store.write_rows(db, [_row(NOW + timedelta(seconds=i), 1, i, 2.0, 50.0) for i in range(20)])
    assert store.refresh_rollups(db, settle_s=-3600)["minutes_rolled_up"] >= 1
    minute = NOW.replace(second=0)
    n, c0, s0, hi1 = db.execute("SELECT n, c0, s0, hi1 FROM citypulse.rollup_1m "
                                "WHERE sensor = 1 AND bucket = %s", (minute,)).fetchone()
    assert (n, c0, s0, hi1) == (20, 20, 40.0, 50.0)
    # a late reading for the same minute marks it dirty again and is rolled up
    store.write_rows(db, [_row(NOW - timedelta(seconds=29), 1, 99, 10.0, 70.0)])
    store.refresh_rollups(db, settle_s=-3600)
    n, s0, hi1 = db.execute("SELECT n, s0, hi1 FROM citypulse.rollup_1m "
                            "WHERE sensor = 1 AND bucket = %s", (minute,)).fetchone()
    assert (n, s0, hi1) == (21, 50.0, 70.0)
    mean = db.execute("SELECT mean FROM citypulse.readings_1m WHERE metric = 'vehicle_count' "
                      "AND bucket = %s", (minute,)).fetchone()[0]
    assert mean == pytest.approx(50.0 / 21)


@pytest.mark.postgres_path
def test_partitions_are_created_ahead_and_dropped_after_retention(db, db_url):
    s = Settings(database_url=db_url, raw_retention_days=3, partitions_ahead_days=2)
    store = schema.Store.open(db, s, migrate_now=False)
    later = datetime.now(UTC) + timedelta(days=10)
    did = store.maintain(db, now=later)
    assert did["partitions_created"] >= 2 and did["partitions_dropped"] >= 1
    parts = {r[0] for r in db.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'citypulse.raw'::regclass").fetchall()}
    assert f"raw_p{(later + timedelta(days=2)).strftime('%Y%m%d')}" in parts
    assert f"raw_p{(later - timedelta(days=4)).strftime('%Y%m%d')}" not in parts
    # a reading outside every partition is a permanent error the caller must isolate
    with pytest.raises(psycopg.errors.CheckViolation):
        store.write_rows(db, [_row(datetime(2001, 1, 1, tzinfo=UTC), 1, 1, 1.0)])


def test_migrations_are_idempotent_and_each_path_issues_its_plan(pg, store_backend):
    from tests.conftest import fresh_database

    url = fresh_database(pg)
    s = Settings(database_url=url)
    with psycopg.connect(url, autocommit=True) as conn:
        assert schema.migrate(conn, s) == []
        assert schema.current_backend(conn) == store_backend
        versions = {v for (v,) in conn.execute("SELECT version FROM citypulse.schema_migrations")}
    planned = schema.plan(store_backend)
    assert {st.version for st in planned} == versions
    assert schema.migrate(None, s, backend=store_backend, dry_run=True) == [
        stmt for st in planned for stmt in st.statements]


def test_timescale_path_issues_hypertable_aggregate_compression_retention():
    issued = "\n".join(schema.migrate(None, Settings(raw_retention_days=9),
                                      backend=schema.TIMESCALE, dry_run=True))
    for needle in ("create_hypertable('citypulse.raw'", "timescaledb.continuous",
                   "add_continuous_aggregate_policy", "timescaledb.compress",
                   "add_compression_policy", "add_retention_policy('citypulse.raw'",
                   "CREATE OR REPLACE VIEW citypulse.readings"):
        assert needle in issued
    assert "PARTITION BY RANGE" not in issued and "refresh_rollup_1m" not in issued
    # every timescale step runs outside a transaction (continuous aggregates require it)
    assert all(not st.transactional for st in schema.plan(schema.TIMESCALE)
               if st.backend == schema.TIMESCALE)


@pytest.mark.timescale_path
def test_redelivery_into_a_compressed_chunk_is_deduplicated_and_merged(db, store):
    first = [_row(NOW + timedelta(seconds=i), 1, i, 10.0, 40.0) for i in range(50)]
    store.write_rows(db, first)
    compressed = db.execute("SELECT count(compress_chunk(c)) FROM "
                            "show_chunks('citypulse.raw') c").fetchone()[0]
    assert compressed >= 1
    again = [_row(NOW + timedelta(seconds=i), 1, i, 99.0, 99.0) for i in range(10)]
    again += [_row(NOW + timedelta(seconds=i), 1, i, 77.0, None, 12.5) for i in range(20, 25)]
    again += [_row(NOW + timedelta(seconds=200), 1, 200, 1.0)]
    assert store.write_rows(db, again) == schema.WriteResult(1, 5, 10)
    assert db.execute("SELECT count(*), max(v0), count(v2) FROM citypulse.raw").fetchone() == (
        51, 10.0, 5)


@pytest.mark.timescale_path
def test_maintain_drops_chunks_past_retention_with_the_same_keys(db, db_url):
    s = Settings(database_url=db_url, raw_retention_days=3)
    store = schema.Store.open(db, s, migrate_now=False)
    old = NOW - timedelta(days=6)
    store.write_rows(db, [_row(old + timedelta(seconds=i), 1, i, 1.0) for i in range(5)])
    store.write_rows(db, [_row(NOW, 1, 99, 2.0)])
    did = store.maintain(db, settle_s=-3600)
    assert set(did) == {"partitions_created", "partitions_dropped", "rollups_expired",
                        "minutes_rolled_up"}
    assert did["partitions_dropped"] >= 1 and did["minutes_rolled_up"] >= 1
    assert db.execute("SELECT count(*) FROM citypulse.raw").fetchone()[0] == 1


@pytest.mark.timescale_path
def test_auto_falls_back_when_timescaledb_is_installed_but_not_preloaded(tmp_path, caplog):
    from citypulse.settings import ConfigError
    from citypulse.stack import PrivatePostgres

    with PrivatePostgres(tmp_path / "pg", preload_timescale=False) as server:
        with psycopg.connect(server.url, autocommit=True) as conn:
            with caplog.at_level("WARNING"):
                assert schema.detect_backend(conn, "auto") == schema.POSTGRES
            assert "shared_preload_libraries = 'timescaledb'" in caplog.text
            with pytest.raises(ConfigError, match="CITYPULSE_STORE_BACKEND"):
                schema.detect_backend(conn, "timescale")
