-- The geospatial twin (twin/): the city model's segments and zones, where each sensor sits,
-- and the per-minute state of roads, zones and trucks derived from citypulse.rollup_1m.
-- Geometry is kept as WKT text in EPSG:4326 (PostGIS is not required).

CREATE TABLE IF NOT EXISTS citypulse.twin_segments (
    segment_id     text PRIMARY KEY,
    from_node      text NOT NULL,
    to_node        text NOT NULL,
    road           text NOT NULL,
    road_class     text NOT NULL,
    direction      text NOT NULL,
    lanes          integer NOT NULL,
    free_flow_kmh  double precision NOT NULL,
    capacity_veh_h double precision NOT NULL,
    length_m       double precision NOT NULL,
    geom_wkt       text NOT NULL
);

CREATE TABLE IF NOT EXISTS citypulse.twin_zones (
    zone_id         text PRIMARY KEY,
    name            text NOT NULL,
    zone_type       text NOT NULL,
    area_m2         double precision NOT NULL,
    people_capacity bigint NOT NULL,
    density_limit   double precision NOT NULL,
    geom_wkt        text NOT NULL
);

CREATE TABLE IF NOT EXISTS citypulse.twin_zone_neighbours (
    zone_a text NOT NULL,
    zone_b text NOT NULL,
    PRIMARY KEY (zone_a, zone_b)
);

-- One row per registered sensor: placed on a segment or in a zone, mobile, or unplaceable.
CREATE TABLE IF NOT EXISTS citypulse.sensor_placement (
    sensor     integer PRIMARY KEY REFERENCES citypulse.sensors (id) ON DELETE CASCADE,
    placement  text NOT NULL,          -- segment | zone | vehicle | point
    status     text NOT NULL,          -- placed | mobile | unplaceable
    segment_id text,
    zone_id    text,
    distance_m double precision,
    reason     text NOT NULL DEFAULT '',
    placed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS sensor_placement_segment_idx
    ON citypulse.sensor_placement (segment_id) WHERE segment_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS sensor_placement_zone_idx
    ON citypulse.sensor_placement (zone_id) WHERE zone_id IS NOT NULL;

-- Per minute and directed segment, from traffic sensors.
CREATE TABLE IF NOT EXISTS citypulse.twin_segment_1m (
    bucket        timestamptz NOT NULL,
    segment_id    text NOT NULL,
    sensors       integer NOT NULL,
    vehicles      double precision,   -- vehicles counted per sensor in the minute (mean)
    flow_veh_h    double precision,
    speed_kmh     double precision,
    occupancy_pct double precision,
    congestion    double precision,   -- 1 - speed / free-flow speed, clipped to [0, 1]
    PRIMARY KEY (segment_id, bucket)
);
CREATE INDEX IF NOT EXISTS twin_segment_1m_bucket_idx ON citypulse.twin_segment_1m (bucket);

-- Per minute and zone, from people counters and truck positions.
CREATE TABLE IF NOT EXISTS citypulse.twin_zone_1m (
    bucket             timestamptz NOT NULL,
    zone_id            text NOT NULL,
    counters           integer NOT NULL DEFAULT 0,
    people             double precision,
    density_per_1000m2 double precision,
    entries            double precision,
    exits              double precision,
    trucks             integer NOT NULL DEFAULT 0,
    PRIMARY KEY (zone_id, bucket)
);
CREATE INDEX IF NOT EXISTS twin_zone_1m_bucket_idx ON citypulse.twin_zone_1m (bucket);

-- Estimated net flow of people between neighbouring zones per minute (a -> b, persons).
CREATE TABLE IF NOT EXISTS citypulse.twin_zone_flow_1m (
    bucket  timestamptz NOT NULL,
    zone_a  text NOT NULL,
    zone_b  text NOT NULL,
    persons double precision NOT NULL,
    PRIMARY KEY (bucket, zone_a, zone_b)
);

-- Per minute and truck (logistics tracker): mean position and the zone it falls in.
CREATE TABLE IF NOT EXISTS citypulse.twin_truck_1m (
    bucket    timestamptz NOT NULL,
    sensor    integer NOT NULL,
    lon       double precision NOT NULL,
    lat       double precision NOT NULL,
    speed_kmh double precision,
    load_kg   double precision,
    zone_id   text,
    PRIMARY KEY (sensor, bucket)
);
CREATE INDEX IF NOT EXISTS twin_truck_1m_bucket_idx ON citypulse.twin_truck_1m (bucket);

-- Zone visits of trucks (entry, exit, dwell) and trips between depot zones.
CREATE TABLE IF NOT EXISTS citypulse.twin_truck_visits (
    sensor  integer NOT NULL,
    zone_id text NOT NULL,
    entered timestamptz NOT NULL,
    exited  timestamptz NOT NULL,
    dwell_s double precision NOT NULL,
    PRIMARY KEY (sensor, entered)
);

CREATE TABLE IF NOT EXISTS citypulse.twin_trips (
    sensor      integer NOT NULL,
    origin_zone text NOT NULL,
    dest_zone   text NOT NULL,
    depart      timestamptz NOT NULL,
    arrive      timestamptz NOT NULL,
    PRIMARY KEY (sensor, depart)
);
CREATE INDEX IF NOT EXISTS twin_trips_depart_idx ON citypulse.twin_trips (depart);

CREATE TABLE IF NOT EXISTS citypulse.twin_od_hourly (
    hour        timestamptz NOT NULL,
    origin_zone text NOT NULL,
    dest_zone   text NOT NULL,
    trips       integer NOT NULL,
    PRIMARY KEY (hour, origin_zone, dest_zone)
);

-- How far the twin's aggregation has got (minute buckets before this are done).
CREATE TABLE IF NOT EXISTS citypulse.twin_watermark (
    name      text PRIMARY KEY,
    upto      timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
