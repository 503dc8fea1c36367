-- The dedup merge of a redelivered batch, on both store paths: insert the readings not stored
-- yet, and fill in metrics of stored readings that are still NULL (the first value of a
-- (sensor, time, metric) wins).  It runs with its owner's rights, so no service role needs
-- UPDATE on citypulse.raw (column-level grants on a compressed hypertable would not apply:
-- TimescaleDB forwards them to its internal compressed table, whose columns differ).
-- Arguments are the batch as columns; returns how many rows were inserted and merged.
CREATE OR REPLACE FUNCTION citypulse.merge_raw(
    t timestamptz[], s int4[], q int8[], a0 float8[], a1 float8[], a2 float8[],
    a3 float8[], a4 float8[], a5 float8[], a6 float8[], a7 float8[],
    OUT inserted bigint, OUT merged bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, citypulse AS $$
BEGIN
    INSERT INTO citypulse.raw (time, sensor, seq, v0, v1, v2, v3, v4, v5, v6, v7)
    SELECT * FROM unnest(t, s, q, a0, a1, a2, a3, a4, a5, a6, a7)
    ON CONFLICT (sensor, time) DO NOTHING;
    GET DIAGNOSTICS inserted = ROW_COUNT;
    UPDATE citypulse.raw AS r
       SET v0 = COALESCE(r.v0, e.v0), v1 = COALESCE(r.v1, e.v1), v2 = COALESCE(r.v2, e.v2),
           v3 = COALESCE(r.v3, e.v3), v4 = COALESCE(r.v4, e.v4), v5 = COALESCE(r.v5, e.v5),
           v6 = COALESCE(r.v6, e.v6), v7 = COALESCE(r.v7, e.v7)
      FROM unnest(t, s, a0, a1, a2, a3, a4, a5, a6, a7)
           AS e(time, sensor, v0, v1, v2, v3, v4, v5, v6, v7)
     WHERE r.sensor = e.sensor AND r.time = e.time
       AND ((r.v0 IS NULL AND e.v0 IS NOT NULL) OR (r.v1 IS NULL AND e.v1 IS NOT NULL)
         OR (r.v2 IS NULL AND e.v2 IS NOT NULL) OR (r.v3 IS NULL AND e.v3 IS NOT NULL)
         OR (r.v4 IS NULL AND e.v4 IS NOT NULL) OR (r.v5 IS NULL AND e.v5 IS NOT NULL)
         OR (r.v6 IS NULL AND e.v6 IS NOT NULL) OR (r.v7 IS NULL AND e.v7 IS NOT NULL));
    GET DIAGNOSTICS merged = ROW_COUNT;
END $$;

REVOKE ALL ON FUNCTION citypulse.merge_raw(timestamptz[], int4[], int8[], float8[], float8[],
    float8[], float8[], float8[], float8[], float8[], float8[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION citypulse.merge_raw(timestamptz[], int4[], int8[], float8[],
    float8[], float8[], float8[], float8[], float8[], float8[], float8[])
    TO citypulse_migrator, citypulse_collector;
