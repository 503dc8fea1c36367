-- Source adapters (issue 14): devices of foreign ecosystems (ThingsBoard gateways, ChirpStack,
-- The Things Stack, HTTP push) as each source names them, their status and radio health, and
-- the quarantine list of devices a source named that the registry does not know.
CREATE TABLE IF NOT EXISTS citypulse.source_devices (
    source     text NOT NULL,
    device     text NOT NULL,          -- the source's own id (device name, devEui, device id)
    sensor_id  text NOT NULL,          -- the registry sensor it resolved to
    status     text,                   -- online / offline (connect, disconnect, join, status)
    health     jsonb NOT NULL DEFAULT '{}'::jsonb,  -- last rssi_dbm, snr_db, battery_pct, margin_db
    last_seen  timestamptz NOT NULL,
    scope      text,                   -- where the source addressed it (ChirpStack application id)
    PRIMARY KEY (source, device)
);

CREATE TABLE IF NOT EXISTS citypulse.source_quarantine (
    source       text NOT NULL,
    device       text NOT NULL,
    first_seen   timestamptz NOT NULL,
    last_seen    timestamptz NOT NULL,
    messages     bigint NOT NULL DEFAULT 1,
    last_payload bytea,
    PRIMARY KEY (source, device)
);

-- the collector records devices and quarantine, and merges client attributes into the
-- registry's properties (props only); workers and dashboards read
GRANT SELECT, INSERT, UPDATE ON citypulse.source_devices, citypulse.source_quarantine
    TO citypulse_collector;
GRANT UPDATE (props, updated_at) ON citypulse.sensors TO citypulse_collector;
GRANT SELECT ON citypulse.source_devices, citypulse.source_quarantine
    TO citypulse_worker, citypulse_dashboard;
REVOKE INSERT, UPDATE, DELETE ON citypulse.source_devices, citypulse.source_quarantine
    FROM citypulse_worker;
