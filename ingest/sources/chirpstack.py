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
from ingest.sources.base import DeviceEvent, Foreign, LoRaWANSource, number
from ingest.sources.mapping import Mapping


class ChirpStack(LoRaWANSource):
    """The ChirpStack v4 integration adapter."""

    name = "chirpstack"
    title = "ChirpStack v4 MQTT integration (application/+/device/+/event/up|status|join)"
    scope_help = "the ChirpStack application id (UUID) the integration publishes"
    events, topic, parse = (wf.CHIRPSTACK_EVENTS, staticmethod(wf.chirpstack),
                            staticmethod(wf.parse_chirpstack))
    device_word = "devEui"

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

    def named_device(self, doc: dict) -> str | None:
        """See :class:`~ingest.sources.base.LoRaWANSource`: ``deviceInfo.devEui``."""
        info = doc.get("deviceInfo")
        return str(info.get("devEui", "")) if isinstance(info, dict) else None

    def decode_event(self, dev: str, event: str, doc: dict, payload: bytes, received_ms: int,
                     mapping: Mapping) -> Foreign:
        """See :class:`~ingest.sources.base.LoRaWANSource`."""
        t = doc.get("time")
        ts = received_ms if t is None else wp.parse_ts(t, received_ms)
        if ts is None:
            return Foreign((), (wp.Rejected(wp.BAD_TIMESTAMP, f"unparseable time {t!r:.80}",
                                            payload, dev),))
        if event == "join":
            return Foreign((), (), (DeviceEvent(dev, ts, status="online"),))
        if event == "status":
            return _status(dev, doc, ts)
        return self.uplink(dev, ts, doc.get("fCnt"), "fCnt", doc.get("object"),
                           "no decoded 'object' (configure a codec in the device profile)",
                           list(doc.get("rxInfo") or ()), payload, mapping)


def _status(dev: str, doc: dict, ts: int) -> Foreign:
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


SOURCE = ChirpStack()
