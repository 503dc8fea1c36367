-- The stable SQL interface for analysts and Grafana, the same on both store paths.

-- One row per (time, sensor, metric): the readings as analysts expect them.
CREATE OR REPLACE VIEW citypulse.readings AS
SELECT r.time, s.sensor_id, s.kind, m.metric, x.value
FROM citypulse.raw r
JOIN citypulse.sensors s ON s.id = r.sensor
CROSS JOIN LATERAL (VALUES (0, r.v0), (1, r.v1), (2, r.v2), (3, r.v3),
                           (4, r.v4), (5, r.v5), (6, r.v6), (7, r.v7)) AS x(slot, value)
JOIN citypulse.metric_catalogue m ON m.kind = s.kind AND m.slot = x.slot
WHERE x.value IS NOT NULL;

COMMENT ON VIEW citypulse.readings IS
    'One row per reading and metric: time, sensor_id, kind, metric, value.';

-- One-minute rollup per sensor and metric: count, mean, min, max.
CREATE OR REPLACE VIEW citypulse.readings_1m AS
SELECT r.bucket, s.sensor_id, s.kind, m.metric, x.c AS samples, x.s / x.c AS mean,
       x.s AS total, x.lo AS min, x.hi AS max
FROM citypulse.rollup_1m r
JOIN citypulse.sensors s ON s.id = r.sensor
CROSS JOIN LATERAL (VALUES (0, r.c0, r.s0, r.lo0, r.hi0), (1, r.c1, r.s1, r.lo1, r.hi1),
                           (2, r.c2, r.s2, r.lo2, r.hi2), (3, r.c3, r.s3, r.lo3, r.hi3),
                           (4, r.c4, r.s4, r.lo4, r.hi4), (5, r.c5, r.s5, r.lo5, r.hi5),
                           (6, r.c6, r.s6, r.lo6, r.hi6), (7, r.c7, r.s7, r.lo7, r.hi7))
    AS x(slot, c, s, lo, hi)
JOIN citypulse.metric_catalogue m ON m.kind = s.kind AND m.slot = x.slot
WHERE x.c > 0;
