-- Dashboards: who did what from the web app (logins, alert acknowledgements, ...).
CREATE TABLE IF NOT EXISTS citypulse.dashboard_audit (
    at       timestamptz NOT NULL DEFAULT now(),
    username text NOT NULL,
    action   text NOT NULL,
    detail   jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS dashboard_audit_at_idx ON citypulse.dashboard_audit (at);
