"""ThingsBoard gateway server-side RPC (``v1/gateway/rpc``), as ThingsBoard's gateway API has it.

To the gateway: ``{"device": name, "data": {"id": n, "method": m, "params": p}}``; the
gateway's answer on the same topic: ``{"device": name, "id": n, "data": {...}}``.  ``n`` is
the command's ``seq`` (an integer, as RPC ids are; the same on every re-send, so the gateway
deduplicates on it).  The reply settles the command: ``succeeded`` with ``data`` as result,
or ``failed`` when ``data`` holds ``error`` (ThingsBoard's convention).  Both directions
share one topic, so the worker also hears its own requests: messages with ``data.method``
are requests and ignored.
"""

from __future__ import annotations

import orjson

from citypulse.wire import foreign as wf
from control.downlinks.base import Answer, Downlink, Route, json_object


class ThingsBoardRpc(Downlink):
    """See the module doc."""

    name = "thingsboard"

    def subscriptions(self) -> list[str]:
        """See :class:`~control.downlinks.base.Downlink`."""
        return [wf.TB_RPC]

    def claims(self, topic: str) -> bool:
        """See :class:`~control.downlinks.base.Downlink`."""
        return topic == wf.TB_RPC

    def request(self, rec: dict, route: Route) -> tuple[str, bytes]:
        """See :class:`~control.downlinks.base.Downlink`."""
        return wf.TB_RPC, orjson.dumps({"device": route.device, "data": {
            "id": rec["seq"], "method": rec["method"], "params": rec["params"]}})

    def answers(self, topic: str, payload: bytes) -> list[Answer]:
        """See :class:`~control.downlinks.base.Downlink`."""
        doc = json_object(payload)
        if doc is None or not isinstance(doc.get("device"), str):
            return []
        n, data = doc.get("id"), doc.get("data")
        if isinstance(data, dict) and "method" in data:  # a request (ours, heard back)
            return []
        if isinstance(n, str) and n.isdigit():
            n = int(n)
        if isinstance(n, bool) or not isinstance(n, int):
            return []
        result = data if isinstance(data, dict) else {"value": data}
        if "error" in result:
            return [Answer("seq", n, doc["device"], "error", result, str(result["error"])[:500])]
        return [Answer("seq", n, doc["device"], "ok", result)]


DOWNLINK = ThingsBoardRpc()
