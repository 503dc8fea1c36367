-- Truck visits keep their slowest minute, so a visit continued across worker passes can
-- still tell a stop (the truck stood still) from driving through.
ALTER TABLE citypulse.twin_truck_visits ADD COLUMN IF NOT EXISTS min_speed double precision;
CREATE INDEX IF NOT EXISTS twin_truck_visits_exited_idx ON citypulse.twin_truck_visits (exited);
