-- People counters at a metro station gate (within 15 m of it) count in/out per gate.
ALTER TABLE citypulse.sensor_placement ADD COLUMN IF NOT EXISTS gate_id text;

CREATE TABLE IF NOT EXISTS citypulse.twin_gate_1m (
    bucket   timestamptz NOT NULL,
    gate_id  text NOT NULL,
    zone_id  text NOT NULL,
    counters integer NOT NULL,
    entries  double precision,
    exits    double precision,
    PRIMARY KEY (gate_id, bucket)
);
CREATE INDEX IF NOT EXISTS twin_gate_1m_bucket_idx ON citypulse.twin_gate_1m (bucket);
