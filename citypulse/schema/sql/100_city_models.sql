-- City models (citypulse/city/): imported cities stored versioned, one of them active.
-- No active row (or model_id NULL) means the generated Dishui Lake city, the default.
-- Written by `citypulse city import|use` (an operator with the migrator role); every stage
-- reads them.  city_events is the audit trail of imports and switches.

CREATE TABLE IF NOT EXISTS citypulse.city_models (
    id          serial PRIMARY KEY,
    name        text NOT NULL,
    version     integer NOT NULL,
    source      text NOT NULL,              -- file name the model was imported from
    metric_crs  text NOT NULL,
    summary     jsonb NOT NULL,             -- counts, extent, zone types
    report      jsonb NOT NULL DEFAULT '{}'::jsonb,  -- what the import repaired or dropped
    layers      bytea NOT NULL,             -- GeoParquet of every layer (citypulse.city.store)
    imported_at timestamptz NOT NULL DEFAULT now(),
    imported_by text NOT NULL DEFAULT current_user,
    UNIQUE (name, version)
);

CREATE TABLE IF NOT EXISTS citypulse.city_active (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    model_id   integer REFERENCES citypulse.city_models (id),
    changed_at timestamptz NOT NULL DEFAULT now(),
    changed_by text NOT NULL DEFAULT current_user
);

CREATE TABLE IF NOT EXISTS citypulse.city_events (
    at      timestamptz NOT NULL DEFAULT now(),
    by_user text NOT NULL DEFAULT current_user,
    action  text NOT NULL,                  -- import | use
    name    text NOT NULL,
    version integer NOT NULL,
    detail  jsonb NOT NULL DEFAULT '{}'::jsonb
);

-- Placement as the one source of where a sensor is: the segment's direction, the sensor's
-- role (people: zone|gate; water: lake_level|drain|rain; traffic: loop; ...), the area a
-- counter covers, and the city model (name@version) it was placed on.
ALTER TABLE citypulse.sensor_placement ADD COLUMN IF NOT EXISTS direction text;
ALTER TABLE citypulse.sensor_placement ADD COLUMN IF NOT EXISTS role text;
ALTER TABLE citypulse.sensor_placement ADD COLUMN IF NOT EXISTS coverage_m2 double precision;
ALTER TABLE citypulse.sensor_placement ADD COLUMN IF NOT EXISTS city_model text;

-- services read city models; only operators (migrator) import or switch them
SELECT citypulse.apply_role_grants();
REVOKE INSERT, UPDATE, DELETE ON citypulse.city_models, citypulse.city_active,
    citypulse.city_events FROM citypulse_worker;
