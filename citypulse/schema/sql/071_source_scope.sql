-- Downlinks (issue 15): the scope a source device was last heard in (a ChirpStack device's
-- application id), so the commands worker can address the source's downlink topic.  A fresh
-- database gets the column from 080_sources.sql; this adds it where 080 ran before it existed.
ALTER TABLE IF EXISTS citypulse.source_devices ADD COLUMN IF NOT EXISTS scope text;
