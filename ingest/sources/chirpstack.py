"""ChirpStack v4 MQTT integration (LoRaWAN): ``application/{app}/device/{devEui}/event/{up|status|join}``.

In: the integration's JSON events.  ``up``: the codec-decoded ``object`` (fields mapped to
catalogue metrics), ``fCnt`` as the reading's seq (loss accounting), ``time`` as the reading
time (else receipt), the best ``rxInfo`` RSSI as ``rssi_dbm`` and its SNR as device health.
``status``: ``batteryLevel`` as a ``battery_pct`` reading and device health (``margin``).
``join``: the device is online.  Out: :class:`~ingest.sources.base.Foreign` keyed by devEui.

Trust: ``network_server``: ChirpStack checked the frame's MIC; the ACL lets its integration
user publish only its own application's topics.  For downlinks (``control.downlinks``) the
same user reads its application's ``command/down`` and publishes the ``txack``/``ack`` events.
"""

from __future__ import annotations

from citypulse.wire import foreign as wf
from citypulse.wire import payload as wp
from ingest.sources.base import (
    NETWORK_SERVER,
    DeviceEvent,
    DeviceTopicSource,
    Foreign,
    frame_counter,
    lorawan_uplink,
    number,
)
from ingest.sources.mapping import Mapping


def _time(doc: dict, received_ms: int) -> int | None:
    t = doc.get("time")
    return received_ms if t is None else wp.parse_ts(t, received_ms)


class ChirpStack(DeviceTopicSource):
    """The ChirpStack v4 integration adapter."""

    name = "chirpstack"
    title = "ChirpStack v4 MQTT integration (application/+/device/+/event/up|status|join)"
    trust = NETWORK_SERVER
    scope_help = "the ChirpStack application id (UUID) the integration publishes"
    events = wf.CHIRPSTACK_EVENTS
    topic = staticmethod(wf.chirpstack)
    parse = staticmethod(wf.parse_chirpstack)

    def acl_topics(self, scope: str | None) -> list[str]:
        """See :class:`~ingest.sources.base.Source`: uplink events and downlink outcomes."""
        return [self.topic(scope, "+", e) for e in self.events + wf.CHIRPSTACK_DOWNLINK_EVENTS]

    def acl_reads(self, scope: str | None) -> list[str]:
        """See :class:`~ingest.sources.base.Source`: its application's downlink queue."""
        return [wf.chirpstack_down(scope or "+", "+")]

    def commands_acl(self) -> list[tuple[str, str]]:
        """See :class:`~ingest.sources.base.Source`."""
        return [("write", wf.chirpstack_down("+", "+"))] + [
            ("read", self.topic("+", "+", e)) for e in wf.CHIRPSTACK_DOWNLINK_EVENTS]

    def event(self, dev: str, event: str, doc: dict, payload: bytes, received_ms: int,
              mapping: Mapping) -> Foreign:
        """See :class:`~ingest.sources.base.DeviceTopicSource`."""
        info = doc.get("deviceInfo")
        named = str(info.get("devEui", "")).lower() if isinstance(info, dict) else ""
        if named and named != dev.lower():
            return Foreign((), (wp.Rejected(wp.MALFORMED, f"topic names devEui {dev}, payload "
                                            f"{named}", payload, dev),))
        ts = _time(doc, received_ms)
        if ts is None:
            return Foreign((), (wp.Rejected(wp.BAD_TIMESTAMP, f"unparseable time "
                                            f"{doc.get('time')!r:.80}", payload, dev),))
        if event == "join":
            return Foreign((), (), (DeviceEvent(dev, ts, status="online"),))
        if event == "status":
            health = []
            out: list[wp.Reading] = []
            batt = number(doc.get("batteryLevel"))
            if batt is not None and not doc.get("batteryLevelUnavailable"):
                health.append(("battery_pct", batt))
                out.append(wp.Reading(dev, ts, None, (("battery_pct", batt),)))
            margin = number(doc.get("margin"))
            if margin is not None:
                health.append(("margin_db", margin))
            return Foreign(tuple(out), (), (DeviceEvent(dev, ts, status="online",
                                                        health=tuple(health)),))
        return _uplink(dev, doc, ts, payload, mapping)


def _uplink(dev: str, doc: dict, ts: int, payload: bytes, mapping: Mapping) -> Foreign:
    fcnt = frame_counter(doc.get("fCnt"), "fCnt", payload, dev)
    if isinstance(fcnt, wp.Rejected):
        return Foreign((), (fcnt,))
    obj = doc.get("object")
    if not isinstance(obj, dict) or not obj:
        return Foreign((), (wp.Rejected(wp.MALFORMED, "no decoded 'object' (configure a codec "
                                        "in the device profile)", payload, dev),))
    return lorawan_uplink(dev, ts, fcnt, obj, list(doc.get("rxInfo") or ()), mapping)


SOURCE = ChirpStack()
