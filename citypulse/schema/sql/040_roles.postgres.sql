-- Plain PostgreSQL: the store upkeep functions create and drop daily partitions of
-- citypulse.raw and recompute rollups, which only the table owner may do.  They run with
-- their owner's rights so the collector and workers can call them without owning tables.
ALTER FUNCTION citypulse.ensure_raw_partitions(date, date)
    SECURITY DEFINER SET search_path = pg_catalog, citypulse;
ALTER FUNCTION citypulse.drop_raw_partitions_before(timestamptz)
    SECURITY DEFINER SET search_path = pg_catalog, citypulse;
ALTER FUNCTION citypulse.refresh_rollup_1m(timestamptz, timestamptz)
    SECURITY DEFINER SET search_path = pg_catalog, citypulse;
ALTER FUNCTION citypulse.refresh_dirty_rollups(interval)
    SECURITY DEFINER SET search_path = pg_catalog, citypulse;
REVOKE ALL ON FUNCTION citypulse.ensure_raw_partitions(date, date),
    citypulse.drop_raw_partitions_before(timestamptz),
    citypulse.refresh_rollup_1m(timestamptz, timestamptz),
    citypulse.refresh_dirty_rollups(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION citypulse.ensure_raw_partitions(date, date),
    citypulse.drop_raw_partitions_before(timestamptz),
    citypulse.refresh_rollup_1m(timestamptz, timestamptz),
    citypulse.refresh_dirty_rollups(interval)
    TO citypulse_migrator, citypulse_collector, citypulse_worker;
