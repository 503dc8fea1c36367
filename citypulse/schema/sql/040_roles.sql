-- Least privilege: one NOLOGIN group role per kind of service.  Login roles (one per
-- service, with passwords) are created by the operator and made members of a group, e.g.
--   CREATE ROLE cp_collector LOGIN PASSWORD '...' IN ROLE citypulse_collector;
-- (deploy/postgres/initdb/50-citypulse-roles.sh does this for docker-compose.yml).
--
--   citypulse_migrator   owns the schema: DDL, migrations, registry loads
--   citypulse_collector  inserts readings, dead letters, status; reads sensors/catalogue;
--                        fills in a missing metric of a stored reading only through
--                        citypulse.merge_raw() (042_store_merge);
--                        runs the store upkeep functions; never deletes or reads alerts
--   citypulse_worker     twin and alerts workers: reads everything, writes derived tables
--   citypulse_dashboard  reads everything, updates alerts (ack/resolve), writes its audit
--
-- Roles are cluster-wide and created idempotently; grants are per database.  Tables made by
-- later migrations get SELECT for workers and dashboards through default privileges, and
-- citypulse.apply_role_grants() re-applies everything (call it at the end of a migration
-- that adds tables a role must write).

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['citypulse_migrator', 'citypulse_collector',
                             'citypulse_worker', 'citypulse_dashboard'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION
                WHEN duplicate_object OR unique_violation THEN
                    NULL;  -- created concurrently by another database's migration
                WHEN insufficient_privilege THEN
                    RAISE EXCEPTION 'role % does not exist and % may not create roles', r, current_user
                        USING HINT = 'create the group roles first (deploy/postgres/initdb/'
                                     '50-citypulse-roles.sh) or migrate as a role with CREATEROLE';
            END;
        END IF;
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION citypulse.apply_role_grants() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t record;
    tables_all text;
    -- what the collector writes, and how
    collector_insert text[] := ARRAY['raw', 'dead_letters', 'rollup_dirty', 'sensor_status',
                                     'gateway_seen'];
    collector_update text[] := ARRAY['sensor_status', 'metric_catalogue', 'gateway_seen'];
    collector_read   text[] := ARRAY['sensors', 'metric_catalogue', 'schema_migrations',
                                     'sensor_status', 'raw', 'rollup_dirty', 'rollup_1m',
                                     'gateway_seen'];
    collector_delete text[] := ARRAY['rollup_dirty', 'rollup_1m'];
    -- tables no worker writes (raw data, registry, other services' records)
    worker_readonly  text[] := ARRAY['raw', 'dead_letters', 'sensors', 'metric_catalogue',
                                     'schema_migrations', 'sensor_status', 'dashboard_audit',
                                     'gateway_seen', 'login_throttle'];
    dashboard_insert text[] := ARRAY['alert_events', 'dashboard_audit'];
    dashboard_update text[] := ARRAY['alerts'];
    -- credentials (050_api_keys): only the dashboards read them, set by that migration
    private_tables   text[] := ARRAY['api_keys'];
BEGIN
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO citypulse_collector, '
                   'citypulse_worker, citypulse_dashboard', current_database());
    EXECUTE format('GRANT ALL ON DATABASE %I TO citypulse_migrator', current_database());
    GRANT USAGE ON SCHEMA citypulse TO citypulse_collector, citypulse_worker,
        citypulse_dashboard;
    GRANT ALL ON SCHEMA citypulse TO citypulse_migrator;
    GRANT ALL ON ALL TABLES IN SCHEMA citypulse TO citypulse_migrator;
    GRANT ALL ON ALL SEQUENCES IN SCHEMA citypulse TO citypulse_migrator;
    GRANT USAGE ON ALL SEQUENCES IN SCHEMA citypulse TO citypulse_worker, citypulse_dashboard;

    FOR t IN
        SELECT c.relname, c.relkind FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'citypulse' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
          AND NOT c.relispartition
    LOOP
        tables_all := format('citypulse.%I', t.relname);
        CONTINUE WHEN t.relname = ANY (private_tables);
        EXECUTE format('GRANT SELECT ON %s TO citypulse_worker, citypulse_dashboard', tables_all);
        IF t.relname = ANY (collector_read) THEN
            EXECUTE format('GRANT SELECT ON %s TO citypulse_collector', tables_all);
        END IF;
        IF t.relname = ANY (collector_insert) THEN
            EXECUTE format('GRANT INSERT ON %s TO citypulse_collector', tables_all);
        END IF;
        IF t.relname = ANY (collector_update) THEN
            EXECUTE format('GRANT INSERT, UPDATE ON %s TO citypulse_collector', tables_all);
        END IF;
        IF t.relname = ANY (collector_delete) AND t.relkind IN ('r', 'p') THEN
            EXECUTE format('GRANT DELETE ON %s TO citypulse_collector', tables_all);
        END IF;
        -- no UPDATE on raw for anyone: the dedup merge (filling in metrics still NULL) runs
        -- in citypulse.merge_raw(), SECURITY DEFINER (042_store_merge)
        IF NOT t.relname = ANY (worker_readonly) AND t.relkind IN ('r', 'p') THEN
            EXECUTE format('GRANT INSERT, UPDATE, DELETE ON %s TO citypulse_worker', tables_all);
        END IF;
        IF t.relname = 'metric_catalogue' THEN  -- Store.open() syncs it with the code
            EXECUTE format('GRANT INSERT, UPDATE ON %s TO citypulse_worker', tables_all);
        END IF;
        IF t.relname = ANY (dashboard_insert) THEN
            EXECUTE format('GRANT INSERT ON %s TO citypulse_dashboard', tables_all);
        END IF;
        IF t.relname = ANY (dashboard_update) THEN
            EXECUTE format('GRANT UPDATE ON %s TO citypulse_dashboard', tables_all);
        END IF;
    END LOOP;
END $$;

SELECT citypulse.apply_role_grants();

ALTER DEFAULT PRIVILEGES IN SCHEMA citypulse
    GRANT SELECT ON TABLES TO citypulse_worker, citypulse_dashboard;
ALTER DEFAULT PRIVILEGES IN SCHEMA citypulse
    GRANT ALL ON TABLES TO citypulse_migrator;
ALTER DEFAULT PRIVILEGES IN SCHEMA citypulse
    GRANT USAGE ON SEQUENCES TO citypulse_worker, citypulse_dashboard;
