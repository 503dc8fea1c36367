-- Plain PostgreSQL: native range partitioning by day, rollups maintained by citypulse.

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
) PARTITION BY RANGE (time);

-- Daily partitions citypulse.raw_pYYYYMMDD for every day in [first_day, last_day].
CREATE OR REPLACE FUNCTION citypulse.ensure_raw_partitions(first_day date, last_day date)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    d date := first_day;
    made integer := 0;
    part text;
BEGIN
    WHILE d <= last_day LOOP
        part := 'raw_p' || to_char(d, 'YYYYMMDD');
        IF to_regclass('citypulse.' || part) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE citypulse.%I PARTITION OF citypulse.raw FOR VALUES FROM (%L) TO (%L)',
                part, d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
            made := made + 1;
        END IF;
        d := d + 1;
    END LOOP;
    RETURN made;
END $$;

-- Retention: drop whole daily partitions that end before cutoff.
CREATE OR REPLACE FUNCTION citypulse.drop_raw_partitions_before(cutoff timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    r record;
    dropped integer := 0;
BEGIN
    FOR r IN
        SELECT c.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_class p ON p.oid = i.inhparent
        JOIN pg_namespace n ON n.oid = p.relnamespace
        WHERE n.nspname = 'citypulse' AND p.relname = 'raw' AND c.relname ~ '^raw_p[0-9]{8}$'
    LOOP
        IF (to_date(substr(r.relname, 6), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC' <= cutoff THEN
            EXECUTE format('DROP TABLE citypulse.%I', r.relname);
            dropped := dropped + 1;
        END IF;
    END LOOP;
    RETURN dropped;
END $$;

CREATE TABLE IF NOT EXISTS citypulse.rollup_1m (
    bucket timestamptz NOT NULL,
    sensor integer NOT NULL,
    n integer NOT NULL,
    c0 integer, s0 double precision, lo0 double precision, hi0 double precision,
    c1 integer, s1 double precision, lo1 double precision, hi1 double precision,
    c2 integer, s2 double precision, lo2 double precision, hi2 double precision,
    c3 integer, s3 double precision, lo3 double precision, hi3 double precision,
    c4 integer, s4 double precision, lo4 double precision, hi4 double precision,
    c5 integer, s5 double precision, lo5 double precision, hi5 double precision,
    c6 integer, s6 double precision, lo6 double precision, hi6 double precision,
    c7 integer, s7 double precision, lo7 double precision, hi7 double precision,
    PRIMARY KEY (sensor, bucket)
);
CREATE INDEX IF NOT EXISTS rollup_1m_bucket_idx ON citypulse.rollup_1m (bucket);

-- Minutes written since they were last rolled up (the writer adds, the worker takes).
CREATE TABLE IF NOT EXISTS citypulse.rollup_dirty (
    bucket timestamptz PRIMARY KEY
);

-- Recompute the one-minute rollup of every bucket in [lo, hi).
CREATE OR REPLACE FUNCTION citypulse.refresh_rollup_1m(lo timestamptz, hi timestamptz)
RETURNS bigint LANGUAGE sql AS $$
    INSERT INTO citypulse.rollup_1m
    SELECT date_trunc('minute', time) AS bucket, sensor, count(*)::int4 AS n,
        count(v0)::int4, sum(v0), min(v0), max(v0),
        count(v1)::int4, sum(v1), min(v1), max(v1),
        count(v2)::int4, sum(v2), min(v2), max(v2),
        count(v3)::int4, sum(v3), min(v3), max(v3),
        count(v4)::int4, sum(v4), min(v4), max(v4),
        count(v5)::int4, sum(v5), min(v5), max(v5),
        count(v6)::int4, sum(v6), min(v6), max(v6),
        count(v7)::int4, sum(v7), min(v7), max(v7)
    FROM citypulse.raw
    WHERE time >= date_trunc('minute', lo) AND time < hi
    GROUP BY 1, 2
    ON CONFLICT (sensor, bucket) DO UPDATE SET n = EXCLUDED.n,
        c0 = EXCLUDED.c0, s0 = EXCLUDED.s0, lo0 = EXCLUDED.lo0, hi0 = EXCLUDED.hi0,
        c1 = EXCLUDED.c1, s1 = EXCLUDED.s1, lo1 = EXCLUDED.lo1, hi1 = EXCLUDED.hi1,
        c2 = EXCLUDED.c2, s2 = EXCLUDED.s2, lo2 = EXCLUDED.lo2, hi2 = EXCLUDED.hi2,
        c3 = EXCLUDED.c3, s3 = EXCLUDED.s3, lo3 = EXCLUDED.lo3, hi3 = EXCLUDED.hi3,
        c4 = EXCLUDED.c4, s4 = EXCLUDED.s4, lo4 = EXCLUDED.lo4, hi4 = EXCLUDED.hi4,
        c5 = EXCLUDED.c5, s5 = EXCLUDED.s5, lo5 = EXCLUDED.lo5, hi5 = EXCLUDED.hi5,
        c6 = EXCLUDED.c6, s6 = EXCLUDED.s6, lo6 = EXCLUDED.lo6, hi6 = EXCLUDED.hi6,
        c7 = EXCLUDED.c7, s7 = EXCLUDED.s7, lo7 = EXCLUDED.lo7, hi7 = EXCLUDED.hi7;
    SELECT 0::bigint;
$$;

-- Roll up every dirty minute that ended at least `settle` ago; returns minutes refreshed.
CREATE OR REPLACE FUNCTION citypulse.refresh_dirty_rollups(settle interval)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    b timestamptz;
    done integer := 0;
BEGIN
    FOR b IN
        DELETE FROM citypulse.rollup_dirty WHERE bucket + interval '1 minute' <= now() - settle
        RETURNING bucket
    LOOP
        PERFORM citypulse.refresh_rollup_1m(b, b + interval '1 minute');
        done := done + 1;
    END LOOP;
    RETURN done;
END $$;
