"""ChirpStack v4 downlink queue over its MQTT integration.

To the network server, on ``application/{app}/device/{devEui}/command/down``:
``{"id": command id, "devEui": ..., "confirmed": true, "fPort": 10, "object": {"method": m,
"params": p}}`` (the device profile's codec encodes ``object`` into the frame; ``id`` becomes
the queue item id, so the outcome events name the command).  Outcomes, on
``.../event/txack`` (a gateway took the frame: ``delivered``) and ``.../event/ack`` (the
device acknowledged the confirmed downlink: ``succeeded``; ``acknowledged`` false or absent,
as proto3 JSON leaves it out, means it timed out: ``failed``), each with ``queueItemId``.
"""

from __future__ import annotations

import orjson

from citypulse.wire import foreign as wf
from control.downlinks.base import Answer, Downlink, Route, json_object

F_PORT = 10  # the application port commands use (the device profile's codec knows it)


class ChirpStackQueue(Downlink):
    """See the module doc."""

    name = "chirpstack"

    def subscriptions(self) -> list[str]:
        """See :class:`~control.downlinks.base.Downlink`."""
        return [wf.chirpstack("+", "+", e) for e in wf.CHIRPSTACK_DOWNLINK_EVENTS]

    def claims(self, topic: str) -> bool:
        """See :class:`~control.downlinks.base.Downlink`."""
        return wf.parse_chirpstack(topic, wf.CHIRPSTACK_DOWNLINK_EVENTS) is not None

    def request(self, rec: dict, route: Route) -> tuple[str, bytes]:
        """See :class:`~control.downlinks.base.Downlink`."""
        if not route.scope:
            raise ValueError(f"chirpstack device {route.device} has no application id yet "
                             "(it is learnt from its first uplink, join or status event)")
        body = {"id": str(rec["id"]), "devEui": route.device, "confirmed": True,
                "fPort": F_PORT, "object": {"method": rec["method"], "params": rec["params"]}}
        return wf.chirpstack_down(route.scope, route.device), orjson.dumps(body)

    def answers(self, topic: str, payload: bytes) -> list[Answer]:
        """See :class:`~control.downlinks.base.Downlink`."""
        parsed = wf.parse_chirpstack(topic, wf.CHIRPSTACK_DOWNLINK_EVENTS)
        doc = json_object(payload)
        if parsed is None or doc is None or not isinstance(doc.get("queueItemId"), str):
            return []
        _app, dev, event = parsed
        qid = doc["queueItemId"]
        fcnt = doc.get("fCntDown")
        result = {"fCntDown": fcnt} if isinstance(fcnt, int) else {}
        if event == "txack":
            return [Answer("uuid", qid, dev, "received", result)]
        if doc.get("acknowledged") is True:
            return [Answer("uuid", qid, dev, "ok", result)]
        return [Answer("uuid", qid, dev, "error", result,
                       "the device did not acknowledge the confirmed downlink")]


DOWNLINK = ChirpStackQueue()
