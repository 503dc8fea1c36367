"""ThingsBoard gateway MQTT API (``v1/gateway/...``), as ThingsBoard's public docs define it.

In: messages on ``v1/gateway/connect`` (``{"device": "Device A", "type": "..."}``),
``v1/gateway/disconnect`` (``{"device": "Device A"}``), ``v1/gateway/telemetry``
(``{"Device A": [{"ts": 1483228800000, "values": {"temperature": 42}}]}``, or the short form
without ts ``{"Device A": [{"temperature": 42}]}`` / ``{"Device A": {"temperature": 42}}``,
stamped on receipt) and ``v1/gateway/attributes`` (``{"Device A": {"firmware": "1.2"}}``:
client attributes into the registry's properties).  Out: :class:`~ingest.sources.base.Foreign`
with readings keyed by device *name*, resolved to registry sensors by the collector.

Trust: ``payload``.  On a standard broker every gateway publishes on the same topics and the
broker cannot rewrite a topic per user, so a gateway account can name any device; the ACL
only keeps non-gateway accounts off these topics (see docs/sources.md).  The same holds for
server-side RPC (``v1/gateway/rpc``, sent by ``control.downlinks``): every gateway account
reads and answers on that one topic.
"""

from __future__ import annotations

from citypulse.wire import foreign as wf
from citypulse.wire import payload as wp
from citypulse.wire.topics import GATEWAY, Topic
from ingest import fastdecode
from ingest.sources.base import (
    PAYLOAD,
    DeviceEvent,
    Foreign,
    Source,
    fragment,
    load_json,
    unmapped,
)
from ingest.sources.mapping import Mapping

CONNECT, DISCONNECT, TELEMETRY, ATTRIBUTES = wf.TB_CONNECT, wf.TB_DISCONNECT, wf.TB_TELEMETRY, \
    wf.TB_ATTRIBUTES
_TOPICS = wf.TB_TOPICS


class ThingsBoardGateway(Source):
    """The ThingsBoard gateway API adapter."""

    name = "thingsboard"
    title = "ThingsBoard gateway MQTT API (v1/gateway/connect|disconnect|telemetry|attributes)"
    trust = PAYLOAD

    def subscriptions(self) -> list[str]:
        """See :class:`~ingest.sources.base.Source`."""
        return list(_TOPICS)

    def claims(self, topic: str) -> bool:
        """See :class:`~ingest.sources.base.Source`."""
        return topic in _TOPICS

    def acl_topics(self, scope: str | None) -> list[str]:
        """See :class:`~ingest.sources.base.Source`: the gateway API and RPC replies."""
        return [*_TOPICS, wf.TB_RPC]

    def acl_reads(self, scope: str | None) -> list[str]:
        """See :class:`~ingest.sources.base.Source`: server-side RPC requests."""
        return [wf.TB_RPC]

    def commands_acl(self) -> list[tuple[str, str]]:
        """See :class:`~ingest.sources.base.Source`."""
        return [("readwrite", wf.TB_RPC)]

    def decode(self, topic: str, payload: bytes, received_ms: int, mapping: Mapping,
               max_bytes: int) -> Foreign:
        """See :class:`~ingest.sources.base.Source`."""
        if topic == TELEMETRY:
            return _telemetry(payload, received_ms, mapping, max_bytes)
        doc, bad = load_json(payload, max_bytes, None)
        if bad is not None:
            return Foreign((), (bad,))
        if topic in (CONNECT, DISCONNECT):
            dev = doc.get("device") if isinstance(doc, dict) else None
            if not isinstance(dev, str) or not dev:
                return Foreign((), (wp.Rejected(wp.MALFORMED, 'need {"device": "<name>"}',
                                                payload),))
            status = "online" if topic == CONNECT else "offline"
            return Foreign((), (), (DeviceEvent(dev, received_ms, status=status),))
        # attributes
        if not isinstance(doc, dict):
            return Foreign((), (wp.Rejected(wp.MALFORMED, 'need {"<device>": {attributes}}',
                                            payload),))
        events, rej = [], []
        for dev, attrs in doc.items():
            if not dev or not isinstance(attrs, dict):
                rej.append(wp.Rejected(wp.MALFORMED, "attributes of a device must be an object",
                                       fragment({dev: attrs}), dev or None))
                continue
            events.append(DeviceEvent(dev, received_ms, attributes=fragment(attrs)))
        return Foreign((), tuple(rej), tuple(events))


_GW = Topic(GATEWAY, "")


def _telemetry(payload: bytes, received_ms: int, mapping: Mapping, max_bytes: int) -> Foreign:
    # the wire contract's gateway shape is ThingsBoard's: decode it with the wire decoder
    # (its typed fast path), then map each reading's foreign fields to catalogue metrics;
    # decoded values are already finite numbers
    d = fastdecode.decode(payload, _GW, received_ms, max_bytes=max_bytes)
    out: list[wp.Reading] = []
    rej = list(d.rejected)
    for r in d.readings:
        good, bad = mapping.apply(r.values)
        rej.extend(unmapped(r.sensor_id, r.ts_ms, bad, mapping))
        if good:
            out.append(wp.Reading(r.sensor_id, r.ts_ms, r.seq, good))
    return Foreign(tuple(out), tuple(rej))


SOURCE = ThingsBoardGateway()
