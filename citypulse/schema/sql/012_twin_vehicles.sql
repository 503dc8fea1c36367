-- Vehicles present per zone: each directed segment belongs to the zone of its midpoint, and
-- a segment holds flow / speed x length vehicles (Greenshields' q = k v).
ALTER TABLE citypulse.twin_segments ADD COLUMN IF NOT EXISTS zone_id text;
ALTER TABLE citypulse.twin_zone_1m ADD COLUMN IF NOT EXISTS vehicles double precision;
