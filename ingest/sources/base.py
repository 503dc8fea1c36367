"""The one interface of a source adapter, and what it returns.

An adapter turns one foreign message (its topic and bytes) into :class:`Foreign`: the same
frozen :class:`~citypulse.wire.payload.Reading` records the wire contract produces (sensor_id
still the *foreign* device id, values already catalogue metrics through the source's
mapping), :class:`~citypulse.wire.payload.Rejected` parts with their dead-letter reason, and
:class:`DeviceEvent` s (status changes, attributes, radio health).  ``decode`` never raises.
Each adapter also says how far the device identity can be trusted (:data:`TRUST`).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from citypulse.wire import payload as wp
from ingest.sources.mapping import Mapping

# How far a message's device identity can be trusted (weakest last)
CONNECTION = "connection"          # the broker credential pins the device to its own topic
NETWORK_SERVER = "network_server"  # a LoRaWAN network server authenticated the device (MIC);
                                   # its integration user may publish only its application's topics
API_KEY = "api_key"                # an HTTP client holding a key scoped to this source
PAYLOAD = "payload"                # named in the payload by any gateway account (ThingsBoard
                                   # gateway API over a standard broker: all gateways share topics)
TRUST = (CONNECTION, NETWORK_SERVER, API_KEY, PAYLOAD)


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """Something a source says about a device besides readings."""

    device: str
    ts_ms: int
    status: str | None = None                 # "online" / "offline"
    attributes: bytes | None = None           # JSON object: into the registry's properties
    health: tuple[tuple[str, float], ...] = ()  # radio/battery figures kept per device


@dataclass(frozen=True, slots=True)
class Foreign:
    """What one foreign message carried."""

    readings: tuple[wp.Reading, ...]
    rejected: tuple[wp.Rejected, ...]
    events: tuple[DeviceEvent, ...] = ()


class Source:
    """Base class of an adapter: name, topics, trust, and ``decode``."""

    name = ""
    title = ""
    trust = PAYLOAD
    transport = "mqtt"  # or "http"

    def subscriptions(self) -> list[str]:
        """MQTT topic filters the collector subscribes to for this source."""
        return []

    def claims(self, topic: str) -> bool:
        """Whether ``topic`` belongs to this source."""
        return False

    scope_help = ""  # what an account's scope names (empty: the source takes no scope)

    def acl_topics(self, scope: str | None) -> list[str]:
        """Topics a publishing account of this source may write (its scope, if any)."""
        return []

    def acl_reads(self, scope: str | None) -> list[str]:
        """Topics the account may read: the commands addressed to its devices (downlinks)."""
        return []

    def commands_acl(self) -> list[tuple[str, str]]:
        """``(read|write|readwrite, topic)`` the commands worker needs for this downlink."""
        return []

    def scope_of(self, topic: str) -> str | None:
        """The scope (application) a message's topic names, recorded per device for downlinks."""
        return None

    def decode(self, topic: str, payload: bytes, received_ms: int, mapping: Mapping,
               max_bytes: int) -> Foreign:
        """Decode one message (never raises)."""
        raise NotImplementedError


class DeviceTopicSource(Source):
    """A source whose topics name the device (``topic(scope, device, event)``/``parse``)."""

    events: tuple[str, ...] = ()
    topic = staticmethod(lambda scope, device, event: "")
    parse = staticmethod(lambda topic: None)

    def subscriptions(self) -> list[str]:
        """See :class:`Source`."""
        return [self.topic("+", "+", e) for e in self.events]

    def claims(self, topic: str) -> bool:
        """See :class:`Source`."""
        return self.parse(topic) is not None

    def acl_topics(self, scope: str | None) -> list[str]:
        """See :class:`Source`."""
        return [self.topic(scope, "+", e) for e in self.events]

    def scope_of(self, topic: str) -> str | None:
        """See :class:`Source`."""
        parsed = self.parse(topic)
        return parsed[0] if parsed else None

    def decode(self, topic: str, payload: bytes, received_ms: int, mapping: Mapping,
               max_bytes: int) -> Foreign:
        """See :class:`Source`: parse the JSON object, then :meth:`event`."""
        _scope, dev, event = self.parse(topic)
        doc, bad = load_json(payload, max_bytes, dev)
        if bad is not None:
            return Foreign((), (bad,))
        if not isinstance(doc, dict):
            return Foreign((), (wp.Rejected(wp.MALFORMED, "a message must be a JSON object",
                                            payload, dev),))
        return self.event(dev, event, doc, payload, received_ms, mapping)

    def event(self, device: str, event: str, doc: dict, payload: bytes, received_ms: int,
              mapping: Mapping) -> Foreign:
        """Decode one event's JSON object (never raises)."""
        raise NotImplementedError


def fragment(obj: object) -> bytes:
    """A storable JSON fragment of ``obj``."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return repr(obj).encode("utf-8", "replace")[:4096]


def load_json(payload: bytes, max_bytes: int, device: str | None) -> tuple[object, wp.Rejected | None]:
    """Parse a JSON payload, or the rejection (too_large / malformed) that replaces it."""
    if len(payload) > max_bytes:
        return None, wp.Rejected(wp.TOO_LARGE, f"{len(payload)} bytes > {max_bytes}", payload,
                                 device)
    try:
        return orjson.loads(payload), None
    except (orjson.JSONDecodeError, RecursionError) as exc:
        return None, wp.Rejected(wp.MALFORMED, f"not JSON: {exc}"[:300], payload, device)


def flatten(obj: dict, prefix: str = "") -> list[tuple[str, object]]:
    """Nested objects as dotted field names: ``{"a": {"b": 1}}`` -> ``[("a.b", 1)]``."""
    out: list[tuple[str, object]] = []
    for k, v in obj.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.extend(flatten(v, name + "."))
        else:
            out.append((name, v))
    return out


def number(v: object) -> float | None:
    """A finite float from a JSON number or boolean, else None."""
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, int | float):
        f = float(v)
        return f if f == f and abs(f) != float("inf") else None
    return None


def unmapped(device: str, ts_ms: int, bad, mapping: Mapping) -> list[wp.Rejected]:
    """``unknown_metric`` rejections of fields the mapping does not know (never guessed)."""
    return [wp.Rejected(wp.UNKNOWN_METRIC, f"field {name!r:.60} is not in the mapping "
                        f"{mapping.path}", fragment({"device": device, "ts": ts_ms, name: v}),
                        device) for name, v in bad]


def map_reading(device: str, ts_ms: int, seq: int | None, fields, mapping: Mapping,
                extra: tuple[tuple[str, float], ...], out: list[wp.Reading],
                rej: list[wp.Rejected]) -> None:
    """Map foreign ``(field, value)`` pairs into one reading of ``device``.

    Non-numeric values are ``malformed``, unmapped fields ``unknown_metric`` (each its own
    rejection); ``extra`` are catalogue pairs the adapter derived itself (radio health).
    """
    nums: list[tuple[str, float]] = []
    for name, v in fields:
        f = number(v)
        if f is None:
            rej.append(wp.Rejected(wp.MALFORMED, f"value of {name!r:.60} is not a finite number",
                                   fragment({"device": device, "ts": ts_ms, name: v}), device))
        else:
            nums.append((name, f))
    good, bad = mapping.apply(nums)
    rej.extend(unmapped(device, ts_ms, bad, mapping))
    values = good + extra
    if values:
        out.append(wp.Reading(device, ts_ms, seq, values))


class LoRaWANSource(DeviceTopicSource):
    """A LoRaWAN network server's integration (ChirpStack, The Things Stack): the shared part.

    The network server checked each frame's MIC (trust ``network_server``).  Subclasses say
    which device the payload names (:meth:`named_device`) and decode their events with
    :meth:`uplink`, which checks the frame counter and the decoded object the same way for
    every network server.
    """

    trust = NETWORK_SERVER
    device_word = "device"  # how the vendor calls the device id in a mismatch message

    def named_device(self, doc: dict) -> str | None:
        """The device id the payload names (None: it names none)."""
        return None

    def decode_event(self, device: str, event: str, doc: dict, payload: bytes,
                     received_ms: int, mapping: Mapping) -> Foreign:
        """Decode one event whose payload names ``device`` or no device (never raises)."""
        raise NotImplementedError

    def event(self, device: str, event: str, doc: dict, payload: bytes, received_ms: int,
              mapping: Mapping) -> Foreign:
        """See :class:`DeviceTopicSource`: the payload must name the topic's device."""
        named = self.named_device(doc)
        if named and named.lower() != device.lower():
            return Foreign((), (wp.Rejected(wp.MALFORMED, f"topic names {self.device_word} "
                                            f"{device}, payload {named}", payload, device),))
        return self.decode_event(device, event, doc, payload, received_ms, mapping)

    @staticmethod
    def uplink(device: str, ts_ms: int, fcnt: object, fcnt_name: str, obj: object,
               obj_help: str, rx: list, payload: bytes, mapping: Mapping,
               rssi_keys: tuple[str, ...] = ("rssi",)) -> Foreign:
        """A decoded uplink: its frame counter (seq) and decoded object, else the rejection."""
        seq = frame_counter(fcnt, fcnt_name, payload, device)
        if isinstance(seq, wp.Rejected):
            return Foreign((), (seq,))
        if not isinstance(obj, dict) or not obj:
            return Foreign((), (wp.Rejected(wp.MALFORMED, obj_help, payload, device),))
        return lorawan_uplink(device, ts_ms, seq, obj, rx, mapping, rssi_keys)


def frame_counter(v: object, name: str, payload: bytes, device: str) -> int | wp.Rejected:
    """A LoRaWAN frame counter (absent = 0: empty fields are omitted), or its rejection."""
    v = 0 if v is None else v
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**32:
        return wp.Rejected(wp.MALFORMED, f"{name} must be an unsigned integer, got {v!r:.40}",
                           payload, device)
    return v


def lorawan_uplink(device: str, ts_ms: int, fcnt: int, obj: dict, rx: list, mapping: Mapping,
                   rssi_keys: tuple[str, ...] = ("rssi",)) -> Foreign:
    """A decoded LoRaWAN uplink: mapped fields, fCnt as seq, best gateway RSSI as rssi_dbm."""
    best = None
    for m in rx:
        if not isinstance(m, dict):
            continue
        rssi = next((r for r in (number(m.get(k)) for k in rssi_keys) if r is not None), None)
        if rssi is not None and (best is None or rssi > best[0]):
            best = (rssi, number(m.get("snr")))
    extra = (("rssi_dbm", best[0]),) if best is not None else ()
    out: list[wp.Reading] = []
    rej: list[wp.Rejected] = []
    map_reading(device, ts_ms, fcnt, flatten(obj), mapping, extra, out, rej)
    events: tuple[DeviceEvent, ...] = ()
    if best is not None:
        snr = (("snr_db", best[1]),) if best[1] is not None else ()
        events = (DeviceEvent(device, ts_ms, health=(("rssi_dbm", best[0]),) + snr),)
    return Foreign(tuple(out), tuple(rej), events)
