-- Gateways' heartbeat: the receive time of each gateway's latest message.  A gateway
-- publishes at least every citypulse.wire.topics.GATEWAY_HEARTBEAT_S (an empty object when
-- none of its sensors has a reading due), and any message on its topic counts, so a
-- gateway that goes dark is seen within a few seconds, whatever its sensors' intervals.
-- One row per gateway, updated in place (HOT updates: no index on last_seen).
CREATE TABLE IF NOT EXISTS citypulse.gateway_seen (
    gateway_id text PRIMARY KEY,
    last_seen  timestamptz NOT NULL,
    messages   bigint NOT NULL DEFAULT 0
) WITH (fillfactor = 50);
