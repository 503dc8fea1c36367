-- API keys (citypulse/apikeys.py): machine credentials, stored as SHA-256 of the secret.
-- Only the dashboards (the web app verifies keys) may read the table, and may change only
-- last_used_at; workers and collectors get nothing (040's apply_role_grants skips it).
CREATE TABLE IF NOT EXISTS citypulse.api_keys (
    id           bigserial PRIMARY KEY,
    name         text NOT NULL UNIQUE,
    prefix       text NOT NULL UNIQUE,
    hash         text NOT NULL,
    scopes       text[] NOT NULL,
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz
);

REVOKE ALL ON citypulse.api_keys FROM citypulse_worker, citypulse_collector,
    citypulse_dashboard;
GRANT SELECT, UPDATE (last_used_at) ON citypulse.api_keys TO citypulse_dashboard;
