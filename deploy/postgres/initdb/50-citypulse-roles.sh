#!/bin/bash
# First start of the db container only (docker-entrypoint-initdb.d): extensions and the
# login roles of the citypulse services.  The privileges themselves are granted by the
# migration citypulse/schema/sql/040_roles.sql to the NOLOGIN group roles
#   citypulse_migrator, citypulse_collector, citypulse_worker, citypulse_dashboard;
# this script only creates one login per service and makes it a member of its group.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname citypulse \
     -v owner_pw="$DB_OWNER_PASSWORD" -v collector_pw="$DB_COLLECTOR_PASSWORD" \
     -v worker_pw="$DB_WORKER_PASSWORD" -v dashboard_pw="$DB_DASHBOARD_PASSWORD" <<'SQL'
CREATE EXTENSION IF NOT EXISTS timescaledb;
CREATE EXTENSION IF NOT EXISTS postgis;
SELECT format('CREATE ROLE %I NOLOGIN', r)
  FROM unnest(ARRAY['citypulse_migrator', 'citypulse_collector', 'citypulse_worker',
                    'citypulse_dashboard']) AS r
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) \gexec
CREATE ROLE citypulse_owner LOGIN PASSWORD :'owner_pw' IN ROLE citypulse_migrator;
CREATE ROLE citypulse_collector_login LOGIN PASSWORD :'collector_pw' IN ROLE citypulse_collector;
CREATE ROLE citypulse_worker_login LOGIN PASSWORD :'worker_pw' IN ROLE citypulse_worker;
CREATE ROLE citypulse_dashboard_login LOGIN PASSWORD :'dashboard_pw' IN ROLE citypulse_dashboard;
ALTER DATABASE citypulse OWNER TO citypulse_owner;
ALTER SCHEMA public OWNER TO citypulse_owner;
SQL
