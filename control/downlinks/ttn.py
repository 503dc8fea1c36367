"""The Things Stack v3 downlink queue over its MQTT server.

To the stack, on ``v3/{app}@{tenant}/devices/{device id}/down/push``: ``{"downlinks": [{
"f_port": 10, "decoded_payload": {"method": m, "params": p}, "confirmed": true, "priority":
"NORMAL", "correlation_ids": ["citypulse:<command id>"]}]}`` (the application's payload
formatter encodes ``decoded_payload`` into the frame).  The stack echoes the correlation ids
in the outcome events, on ``.../down/sent`` (a gateway transmitted the frame: ``delivered``),
``.../down/ack`` (the device acknowledged it: ``succeeded``), ``.../down/nack`` (it did not:
``failed``) and ``.../down/failed`` (the stack could not schedule it: ``failed``, with the
stack's error).  The device id is the topic's (the ACL lets the application's user write only
its own application's topics).
"""

from __future__ import annotations

from uuid import UUID

import orjson

from citypulse.wire import foreign as wf
from control.downlinks.base import Answer, Downlink, Route, json_object

F_PORT = 10  # the application port commands use (the payload formatter knows it)
TAG = "citypulse:"  # our correlation id's prefix: the stack adds its own ids next to it
BODY = {"down/sent": "downlink_sent", "down/ack": "downlink_ack", "down/nack": "downlink_nack",
        "down/failed": "downlink_failed"}


class TheThingsStackQueue(Downlink):
    """See the module doc."""

    name = "ttn"

    def subscriptions(self) -> list[str]:
        """See :class:`~control.downlinks.base.Downlink`."""
        return [wf.ttn("+", "+", e) for e in wf.TTN_DOWNLINK_EVENTS]

    def claims(self, topic: str) -> bool:
        """See :class:`~control.downlinks.base.Downlink`."""
        return wf.parse_ttn(topic, wf.TTN_DOWNLINK_EVENTS) is not None

    def request(self, rec: dict, route: Route) -> tuple[str, bytes]:
        """See :class:`~control.downlinks.base.Downlink`."""
        if not route.scope:
            raise ValueError(f"ttn device {route.device} has no application yet "
                             "(it is learnt from its first uplink or join)")
        down = {"f_port": F_PORT, "decoded_payload": {"method": rec["method"],
                                                      "params": rec["params"]},
                "confirmed": True, "priority": "NORMAL",
                "correlation_ids": [f"{TAG}{rec['id']}"]}
        return wf.ttn_push(route.scope, route.device), orjson.dumps({"downlinks": [down]})

    def answers(self, topic: str, payload: bytes) -> list[Answer]:
        """See :class:`~control.downlinks.base.Downlink`."""
        parsed = wf.parse_ttn(topic, wf.TTN_DOWNLINK_EVENTS)
        doc = json_object(payload)
        if parsed is None or doc is None:
            return []
        _app, dev, event = parsed
        body = doc.get(BODY[event])
        body = body if isinstance(body, dict) else {}
        down = body.get("downlink") if event == "down/failed" else body
        down = down if isinstance(down, dict) else {}
        cid = _command_id(down.get("correlation_ids")) or _command_id(doc.get("correlation_ids"))
        if cid is None:
            return []
        fcnt = down.get("f_cnt")
        result = {"f_cnt": fcnt} if isinstance(fcnt, int) and not isinstance(fcnt, bool) else {}
        if event == "down/sent":
            return [Answer("uuid", cid, dev, "received", result)]
        if event == "down/ack":
            return [Answer("uuid", cid, dev, "ok", result)]
        if event == "down/nack":
            return [Answer("uuid", cid, dev, "error", result,
                           "the device did not acknowledge the confirmed downlink (nack)")]
        return [Answer("uuid", cid, dev, "error", result, _error(body.get("error")))]


def _command_id(ids: object) -> str | None:
    """The command id among a message's correlation ids (ours carry :data:`TAG`)."""
    if not isinstance(ids, list):
        return None
    for c in ids:
        if isinstance(c, str) and c.startswith(TAG):
            try:
                return str(UUID(c[len(TAG):]))
            except ValueError:
                return None
    return None


def _error(err: object) -> str:
    """The stack's error (``message_format`` / ``name``), for the command's reason."""
    if isinstance(err, dict):
        text = err.get("message_format") or err.get("name")
        if text:
            return f"the stack could not send the downlink: {str(text)[:400]}"
    return "the stack could not send the downlink"


DOWNLINK = TheThingsStackQueue()
