-- The collector records gateway heartbeats (003_gateway_seen); workers only read them.
-- 040_roles' apply_role_grants() lists the table for databases migrated from scratch; these
-- grants bring databases migrated before 003 existed to the same state.
GRANT SELECT, INSERT, UPDATE ON citypulse.gateway_seen TO citypulse_collector;
REVOKE INSERT, UPDATE, DELETE ON citypulse.gateway_seen FROM citypulse_worker;
