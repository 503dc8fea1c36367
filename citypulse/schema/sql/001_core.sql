-- citypulse core schema, common to plain PostgreSQL and TimescaleDB.
-- Analysts and Grafana use the documented interface: the view citypulse.readings,
-- the table citypulse.dead_letters and the rollup citypulse.rollup_1m (see README).

CREATE TABLE IF NOT EXISTS citypulse.metric_catalogue (
    kind        text     NOT NULL,
    slot        smallint NOT NULL,
    metric      text     NOT NULL,
    unit        text     NOT NULL,
    min_value   double precision NOT NULL,
    max_value   double precision NOT NULL,
    description text     NOT NULL DEFAULT '',
    PRIMARY KEY (kind, slot),
    UNIQUE (kind, metric)
);

CREATE TABLE IF NOT EXISTS citypulse.sensors (
    id            integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sensor_id     text NOT NULL UNIQUE,
    kind          text NOT NULL,
    lon           double precision NOT NULL,
    lat           double precision NOT NULL,
    gateway_id    text,
    props         jsonb NOT NULL DEFAULT '{}'::jsonb,
    registered_at timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS sensors_gateway_idx ON citypulse.sensors (gateway_id);
CREATE INDEX IF NOT EXISTS sensors_kind_idx ON citypulse.sensors (kind);

CREATE TABLE IF NOT EXISTS citypulse.dead_letters (
    received_at timestamptz NOT NULL,
    topic       text NOT NULL,
    reason      text NOT NULL,
    payload     bytea NOT NULL,
    detail      text NOT NULL DEFAULT '',
    sensor_id   text
);
CREATE INDEX IF NOT EXISTS dead_letters_time_idx ON citypulse.dead_letters (received_at);
CREATE INDEX IF NOT EXISTS dead_letters_reason_idx ON citypulse.dead_letters (reason, received_at);

-- Retained online/offline status messages (devices' last wills).
CREATE TABLE IF NOT EXISTS citypulse.sensor_status (
    sensor_id  text PRIMARY KEY,
    status     text NOT NULL,
    changed_at timestamptz NOT NULL
);
