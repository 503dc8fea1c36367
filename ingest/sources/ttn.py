"""The Things Stack v3 MQTT uplinks: ``v3/{application id}@{tenant id}/devices/{device id}/up``.

In: the application uplink JSON (``end_device_ids``, ``received_at``, ``uplink_message`` with
``f_cnt``, ``decoded_payload``, ``rx_metadata``); also ``.../join`` (device online).  Out:
readings keyed by device id: ``decoded_payload`` fields mapped to catalogue metrics,
``f_cnt`` as seq, the earliest gateway ``rx_metadata[].time`` (else the uplink's
``received_at``) as reading time, the best RSSI as ``rssi_dbm``, SNR as device health.

Trust: ``network_server`` (the stack checked the MIC; its MQTT user is the application).  For
downlinks (``control.downlinks``) the same user reads its application's ``down/push`` and
publishes the ``down/sent|ack|nack|failed`` events.
"""

from __future__ import annotations

from citypulse.wire import foreign as wf
from citypulse.wire import payload as wp
from ingest.sources.base import DeviceEvent, Foreign, LoRaWANSource
from ingest.sources.mapping import Mapping


class TheThingsStack(LoRaWANSource):
    """The Things Stack v3 MQTT adapter."""

    name = "ttn"
    title = "The Things Stack v3 MQTT (v3/{app}@{tenant}/devices/+/up|join)"
    scope_help = "the application as {application id}@{tenant id}"
    events, topic, parse = wf.TTN_EVENTS, staticmethod(wf.ttn), staticmethod(wf.parse_ttn)

    def acl_topics(self, scope: str | None) -> list[str]:
        """See :class:`~ingest.sources.base.Source`: uplink events and downlink outcomes."""
        return [self.topic(scope, "+", e) for e in self.events + wf.TTN_DOWNLINK_EVENTS]

    def acl_reads(self, scope: str | None) -> list[str]:
        """See :class:`~ingest.sources.base.Source`: its application's downlink pushes."""
        return [wf.ttn_push(scope or "+", "+")]

    def commands_acl(self) -> list[tuple[str, str]]:
        """See :class:`~ingest.sources.base.Source`."""
        return [("write", wf.ttn_push("+", "+"))] + [
            ("read", self.topic("+", "+", e)) for e in wf.TTN_DOWNLINK_EVENTS]

    def named_device(self, doc: dict) -> str | None:
        """See :class:`~ingest.sources.base.LoRaWANSource`: ``end_device_ids.device_id``."""
        ids = doc.get("end_device_ids")
        named = ids.get("device_id") if isinstance(ids, dict) else None
        return None if named is None else str(named)

    def decode_event(self, dev: str, event: str, doc: dict, payload: bytes, received_ms: int,
                     mapping: Mapping) -> Foreign:
        """See :class:`~ingest.sources.base.LoRaWANSource`."""
        if event == "join":
            ts = wp.parse_ts(doc.get("received_at"), received_ms)
            return Foreign((), (), (DeviceEvent(dev, ts or received_ms, status="online"),))
        up = doc.get("uplink_message")
        if not isinstance(up, dict):
            return Foreign((), (wp.Rejected(wp.MALFORMED, "no uplink_message", payload, dev),))
        rx = [m for m in up.get("rx_metadata") or () if isinstance(m, dict)]
        times = [t for t in (wp.parse_ts(m.get("time"), -1) for m in rx if m.get("time"))
                 if t is not None and t >= 0]
        raw_t = up.get("received_at", doc.get("received_at"))
        ts = min(times) if times else wp.parse_ts(raw_t, received_ms)
        if ts is None:
            return Foreign((), (wp.Rejected(wp.BAD_TIMESTAMP, f"unparseable received_at "
                                            f"{raw_t!r:.80}", payload, dev),))
        return self.uplink(dev, ts, up.get("f_cnt"), "f_cnt", up.get("decoded_payload"),
                           "no decoded_payload (set a payload formatter)", rx, payload, mapping,
                           ("rssi", "channel_rssi"))


SOURCE = TheThingsStack()
