-- TimescaleDB upkeep with the same interface as the plain-PostgreSQL path (Store.maintain,
-- Store.refresh_rollups).  Run statement by statement outside a transaction; idempotent.
--
-- Rollups: minutes written are marked dirty, as on the plain path, and a session that may
-- refresh the continuous aggregate (its owner: the migrator, or a superuser) refreshes
-- exactly those minutes.  Service roles may not: TimescaleDB requires the owner, refreshing
-- cannot run inside a (SECURITY DEFINER) function, and ownership cannot be handed to a
-- group role without CREATE on TimescaleDB's internal schema.  For them the aggregate's
-- policy (every 30 s) refreshes, and real-time aggregation keeps the newest minutes visible.
CREATE TABLE IF NOT EXISTS citypulse.rollup_dirty (
    bucket timestamptz PRIMARY KEY
);

-- Drop whole chunks past retention (drop_chunks needs the owner); returns chunks dropped.
CREATE OR REPLACE FUNCTION citypulse.drop_raw_chunks_before(cutoff timestamptz)
RETURNS integer LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public, citypulse
AS $$ SELECT count(*)::int FROM drop_chunks('citypulse.raw', older_than => cutoff) $$;

CREATE OR REPLACE FUNCTION citypulse.drop_rollup_chunks_before(cutoff timestamptz)
RETURNS integer LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public, citypulse
AS $$ SELECT count(*)::int FROM drop_chunks('citypulse.rollup_1m', older_than => cutoff) $$;

REVOKE ALL ON FUNCTION citypulse.drop_raw_chunks_before(timestamptz),
    citypulse.drop_rollup_chunks_before(timestamptz) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION citypulse.drop_raw_chunks_before(timestamptz),
    citypulse.drop_rollup_chunks_before(timestamptz)
    TO citypulse_migrator, citypulse_collector, citypulse_worker;

SELECT citypulse.apply_role_grants();
