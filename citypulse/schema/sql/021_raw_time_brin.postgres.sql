-- analytics reads the freshest raw readings every second by time range; a BRIN index on
-- time (rows arrive in time order) makes that cheap without slowing COPY down.
-- (TimescaleDB's hypertable already has a time index.)
CREATE INDEX IF NOT EXISTS raw_time_brin_idx ON citypulse.raw USING brin (time)
    WITH (pages_per_range = 16);
