-- Device upkeep as work for field crews (issue 19): one open ticket per device (sensor) or
-- per gateway, with the problems found (silent, battery_low, clock_ahead, stuck, bad_data),
-- their evidence and the device's last good reading; grouped by zone (the twin's placement).
-- The alerts worker (analytics/upkeep.py) opens, updates and closes them: a ticket is closed
-- ('recovered') when none of its problems is found any more.  Tickets never reach the wall.

CREATE TABLE IF NOT EXISTS citypulse.maintenance_tickets (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entity_kind  text NOT NULL CHECK (entity_kind IN ('sensor', 'gateway')),
    entity_id    text NOT NULL,
    zone_id      text,
    problems     text[] NOT NULL,
    status       text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    opened_at    timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    closed_at    timestamptz,
    close_reason text,
    evidence     jsonb NOT NULL DEFAULT '{}'::jsonb,
    last_good_at timestamptz,
    last_good    jsonb
);
CREATE UNIQUE INDEX IF NOT EXISTS maintenance_tickets_open_idx
    ON citypulse.maintenance_tickets (entity_kind, entity_id) WHERE status = 'open';
CREATE INDEX IF NOT EXISTS maintenance_tickets_zone_idx
    ON citypulse.maintenance_tickets (zone_id, entity_id) WHERE status = 'open';

-- the alerts worker (citypulse_worker) writes it; dashboards read it
SELECT citypulse.apply_role_grants();
