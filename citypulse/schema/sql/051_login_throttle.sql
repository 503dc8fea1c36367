-- Login throttling (dashboards/throttle.py): failed logins per user and per client address,
-- shared by every web worker.  Only the dashboards write it; workers may not touch it.
CREATE TABLE IF NOT EXISTS citypulse.login_throttle (
    key          text PRIMARY KEY,          -- 'user:<name>' or 'addr:<ip>'
    failures     integer NOT NULL DEFAULT 0,
    last_failure timestamptz NOT NULL DEFAULT now(),
    locked_until timestamptz
);
REVOKE ALL ON citypulse.login_throttle FROM citypulse_worker, citypulse_collector;
GRANT SELECT ON citypulse.login_throttle TO citypulse_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON citypulse.login_throttle TO citypulse_dashboard;
