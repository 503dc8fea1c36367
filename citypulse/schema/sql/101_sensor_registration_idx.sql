-- SensorThings Locations/HistoricalLocations are ordered by (Thing, time): the registry's
-- rows in that order straight off an index, so they merge with raw's (sensor, time) index
-- scans of trackers' tracks without a sort (standards/sta/track.py).
CREATE INDEX IF NOT EXISTS sensors_id_registered_idx ON citypulse.sensors (id, registered_at);
