-- control: commands to devices as persisted records with a lifecycle, fleet commands,
-- their audit trail and the devices' desired/reported shadows.
--
-- Lifecycle: pending_approval -> queued -> sent -> delivered -> succeeded | failed,
-- plus expired, cancelled, rejected (by policy or by the approver).

CREATE TABLE IF NOT EXISTS citypulse.command_fleets (
    id            uuid PRIMARY KEY,
    kind          text NOT NULL,
    method        text NOT NULL,
    params        jsonb NOT NULL DEFAULT '{}'::jsonb,
    target        jsonb NOT NULL,                -- {"zone": ..} | {"segment": ..} | {"alert": ..}
    status        text NOT NULL DEFAULT 'running'
                  CHECK (status IN ('running', 'done', 'aborted', 'cancelled')),
    rate_per_s    double precision NOT NULL,
    abort_pct     double precision NOT NULL,
    devices       integer NOT NULL DEFAULT 0,
    requested_by  text NOT NULL,
    alert_id      bigint,
    created_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);

CREATE TABLE IF NOT EXISTS citypulse.commands (
    id            uuid PRIMARY KEY,              -- the id the device deduplicates on
    seq           bigint GENERATED ALWAYS AS IDENTITY,  -- request order (per-device order)
    device_id     text NOT NULL,
    kind          text NOT NULL,
    method        text NOT NULL,
    params        jsonb NOT NULL DEFAULT '{}'::jsonb,
    risk          text NOT NULL,
    status        text NOT NULL CHECK (status IN ('pending_approval', 'queued', 'sent',
                  'delivered', 'succeeded', 'failed', 'expired', 'cancelled', 'rejected')),
    requested_by  text NOT NULL,
    approved_by   text,
    alert_id      bigint,
    fleet_id      uuid REFERENCES citypulse.command_fleets (id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    attempts      integer NOT NULL DEFAULT 0,
    max_attempts  integer NOT NULL,
    sent_at       timestamptz,
    delivered_at  timestamptz,
    finished_at   timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    shadow_version integer,                      -- set_interval: the desired version it wrote
    result        jsonb NOT NULL DEFAULT '{}'::jsonb,
    reason        text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS commands_active_idx ON citypulse.commands (status, seq)
    WHERE status IN ('queued', 'sent', 'delivered', 'pending_approval');
CREATE INDEX IF NOT EXISTS commands_device_idx ON citypulse.commands (device_id, seq);
CREATE INDEX IF NOT EXISTS commands_created_idx ON citypulse.commands (created_at);
CREATE INDEX IF NOT EXISTS commands_alert_idx ON citypulse.commands (alert_id)
    WHERE alert_id IS NOT NULL;
-- a fleet reaches each device once, whatever restarts happen while it fans out
CREATE UNIQUE INDEX IF NOT EXISTS commands_fleet_device_idx
    ON citypulse.commands (fleet_id, device_id) WHERE fleet_id IS NOT NULL;

-- every step of every command: who, what, when, linked to the alert that motivated it
CREATE TABLE IF NOT EXISTS citypulse.command_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    command_id  uuid REFERENCES citypulse.commands (id) ON DELETE CASCADE,
    fleet_id    uuid,
    alert_id    bigint,
    at          timestamptz NOT NULL DEFAULT now(),
    action      text NOT NULL,     -- request | approve | reject | queue | send | ... | status
    status      text NOT NULL DEFAULT '',
    by          text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS command_events_command_idx ON citypulse.command_events (command_id, at);
CREATE INDEX IF NOT EXISTS command_events_alert_idx ON citypulse.command_events (alert_id)
    WHERE alert_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS citypulse.device_shadows (
    device_id        text PRIMARY KEY,
    desired          jsonb NOT NULL DEFAULT '{}'::jsonb,
    desired_version  integer NOT NULL DEFAULT 0,
    desired_at       timestamptz,
    published_version integer NOT NULL DEFAULT 0,  -- last desired version on the broker
    reported         jsonb NOT NULL DEFAULT '{}'::jsonb,
    reported_version integer NOT NULL DEFAULT 0,
    reported_at      timestamptz
);

SELECT citypulse.apply_role_grants();
-- dashboards request, approve and cancel commands (role-checked in the app) and audit them;
-- the commands worker (citypulse_worker) writes these tables through apply_role_grants()
GRANT INSERT, UPDATE ON citypulse.commands, citypulse.command_fleets, citypulse.device_shadows
    TO citypulse_dashboard;
GRANT INSERT ON citypulse.command_events TO citypulse_dashboard;
