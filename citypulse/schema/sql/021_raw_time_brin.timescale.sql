-- TimescaleDB: the hypertable's default b-tree on time (create_hypertable's) becomes a BRIN
-- index, as raw has on plain PostgreSQL (021_raw_time_brin.postgres.sql): rows arrive in
-- time order, so a BRIN index serves the time windows (analytics' freshest readings, the
-- continuous aggregate's refresh) at a fraction of a b-tree's cost per inserted row
-- (`citypulse bench copycost`).  Indexes on a hypertable apply to every chunk.
DROP INDEX IF EXISTS citypulse.raw_time_idx;
CREATE INDEX IF NOT EXISTS raw_time_brin_idx ON citypulse.raw USING brin (time)
    WITH (pages_per_range = 16);
