-- TimescaleDB: a hypertable, a one-minute continuous aggregate, compression and retention.
-- Run statement by statement outside a transaction (continuous aggregates require it);
-- every statement is idempotent.

CREATE TABLE IF NOT EXISTS citypulse.raw (
    time   timestamptz NOT NULL,
    sensor integer NOT NULL,
    seq    bigint,
    v0 double precision,
    v1 double precision,
    v2 double precision,
    v3 double precision,
    v4 double precision,
    v5 double precision,
    v6 double precision,
    v7 double precision,
    UNIQUE (sensor, time)
);

SELECT create_hypertable('citypulse.raw', 'time', chunk_time_interval => interval '1 day',
                         if_not_exists => true);

CREATE MATERIALIZED VIEW IF NOT EXISTS citypulse.rollup_1m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket('1 minute', time) AS bucket, sensor, count(*)::int4 AS n,
    count(v0)::int4 AS c0, sum(v0) AS s0, min(v0) AS lo0, max(v0) AS hi0,
    count(v1)::int4 AS c1, sum(v1) AS s1, min(v1) AS lo1, max(v1) AS hi1,
    count(v2)::int4 AS c2, sum(v2) AS s2, min(v2) AS lo2, max(v2) AS hi2,
    count(v3)::int4 AS c3, sum(v3) AS s3, min(v3) AS lo3, max(v3) AS hi3,
    count(v4)::int4 AS c4, sum(v4) AS s4, min(v4) AS lo4, max(v4) AS hi4,
    count(v5)::int4 AS c5, sum(v5) AS s5, min(v5) AS lo5, max(v5) AS hi5,
    count(v6)::int4 AS c6, sum(v6) AS s6, min(v6) AS lo6, max(v6) AS hi6,
    count(v7)::int4 AS c7, sum(v7) AS s7, min(v7) AS lo7, max(v7) AS hi7
FROM citypulse.raw
GROUP BY 1, 2
WITH NO DATA;

SELECT add_continuous_aggregate_policy('citypulse.rollup_1m',
    start_offset => interval '3 hours', end_offset => interval '1 minute',
    schedule_interval => interval '30 seconds', if_not_exists => true);

ALTER TABLE citypulse.raw SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'sensor', timescaledb.compress_orderby = 'time DESC');

SELECT add_compression_policy('citypulse.raw', interval '1 day', if_not_exists => true);

SELECT add_retention_policy('citypulse.raw', %(raw_retention)s::interval,
                            if_not_exists => true);

SELECT add_retention_policy('citypulse.rollup_1m', %(rollup_retention)s::interval,
                            if_not_exists => true);
