-- analytics: alerts, their audit trail and their deliveries (MQTT, webhooks).

CREATE TABLE IF NOT EXISTS citypulse.alerts (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule             text NOT NULL,
    entity_kind      text NOT NULL,          -- sensor | gateway | segment | zone | city
    entity_id        text NOT NULL,
    severity         text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    status           text NOT NULL DEFAULT 'open'
                     CHECK (status IN ('open', 'acknowledged', 'resolved')),
    title            text NOT NULL DEFAULT '',
    started_at       timestamptz NOT NULL,   -- when the condition became true (data time)
    detected_at      timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    acknowledged_at  timestamptz,
    acknowledged_by  text,
    resolved_at      timestamptz,
    resolved_by      text,
    escalated_at     timestamptz,
    escalation_level integer NOT NULL DEFAULT 0,
    zone_id          text NOT NULL DEFAULT 'city',
    lon              double precision,
    lat              double precision,
    geometry         jsonb,                  -- GeoJSON geometry of the place
    scope            jsonb NOT NULL DEFAULT '[]'::jsonb,   -- grouped members (sensors, segments)
    evidence         jsonb NOT NULL DEFAULT '{}'::jsonb
);
-- One alert per (rule, entity) while it is not resolved.
CREATE UNIQUE INDEX IF NOT EXISTS alerts_one_open_idx
    ON citypulse.alerts (rule, entity_kind, entity_id) WHERE status <> 'resolved';
CREATE INDEX IF NOT EXISTS alerts_status_idx ON citypulse.alerts (status, severity, started_at);
CREATE INDEX IF NOT EXISTS alerts_started_idx ON citypulse.alerts (started_at);

CREATE TABLE IF NOT EXISTS citypulse.alert_events (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id bigint NOT NULL REFERENCES citypulse.alerts (id) ON DELETE CASCADE,
    at       timestamptz NOT NULL DEFAULT now(),
    action   text NOT NULL
             CHECK (action IN ('open', 'acknowledge', 'escalate', 'resolve', 'auto_resolve',
                               'regroup', 'note')),
    by       text NOT NULL,
    note     text NOT NULL DEFAULT '',
    detail   jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS alert_events_alert_idx ON citypulse.alert_events (alert_id, at);

CREATE TABLE IF NOT EXISTS citypulse.alert_deliveries (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id    bigint NOT NULL REFERENCES citypulse.alerts (id) ON DELETE CASCADE,
    channel     text NOT NULL,               -- mqtt | webhook
    target      text NOT NULL,               -- topic or URL
    event       text NOT NULL,               -- open | escalate | resolve ...
    status      text NOT NULL CHECK (status IN ('pending', 'ok', 'retrying', 'failed')),
    attempts    integer NOT NULL DEFAULT 0,
    last_error  text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS alert_deliveries_status_idx
    ON citypulse.alert_deliveries (status, updated_at);
