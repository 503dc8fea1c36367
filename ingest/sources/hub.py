"""What a collector (or the HTTP push endpoint) does with the configured sources.

In: :class:`~citypulse.settings.Settings` (``sources``, ``sources_mapping_dir``,
``sources_quarantine``) and a Prometheus registry.  Out: the topic filters to subscribe to,
and per foreign message a :class:`Handled` (rows for ``Store.write_rows``, dead letters,
status changes, side records for :meth:`SourceHub.write_side`, a tally for the per-source
metrics).  Device ids are resolved to registry sensors by the mapping file's ``devices:``,
then the registry property ``<source>_device`` (a deployment-file column), then the sensor
id itself.  Never raises on a message::

    hub = SourceHub(settings, prometheus_registry)      # ConfigError on a bad setting/mapping
    src = hub.claim(topic)                              # None: not a source topic
    h = hub.handle(src, topic, payload, received_ms, rate_limited, registry, window)
"""

from __future__ import annotations

import threading
from collections.abc import Mapping as Map
from dataclasses import dataclass, field
from datetime import datetime

import orjson
import psycopg
from prometheus_client import CollectorRegistry, Counter

from citypulse.settings import ConfigError, Settings
from citypulse.wire import payload as wp
from citypulse.wire.topics import TELEMETRY, Topic
from ingest import sources
from ingest.sources import mapping as mp
from ingest.sources.base import Source
from ingest.validate import DeadLetter, Window, dead_letter, to_time, validate

_ATTRS = """UPDATE citypulse.sensors SET props = jsonb_set(props, '{attributes}',
    coalesce(props->'attributes', '{}'::jsonb) || %s::jsonb), updated_at = now()
WHERE sensor_id = %s"""
_DEVICE = """INSERT INTO citypulse.source_devices AS d (source, device, sensor_id, status,
    health, last_seen, scope) VALUES (%s, %s, %s, %s, %s::jsonb, to_timestamp(%s / 1000.0), %s)
ON CONFLICT (source, device) DO UPDATE SET sensor_id = EXCLUDED.sensor_id,
    status = coalesce(EXCLUDED.status, d.status), health = d.health || EXCLUDED.health,
    last_seen = greatest(d.last_seen, EXCLUDED.last_seen),
    scope = coalesce(EXCLUDED.scope, d.scope)"""
_QUARANTINE = """INSERT INTO citypulse.source_quarantine AS q (source, device, first_seen,
    last_seen, messages, last_payload) VALUES (%s, %s, to_timestamp(%s / 1000.0),
    to_timestamp(%s / 1000.0), %s, %s)
ON CONFLICT (source, device) DO UPDATE SET last_seen = greatest(q.last_seen, EXCLUDED.last_seen),
    messages = q.messages + EXCLUDED.messages, last_payload = EXCLUDED.last_payload"""
_ALIASES = """SELECT key, value, sensor_id FROM citypulse.sensors, jsonb_each_text(props)
WHERE props ?| %(keys)s AND key = ANY(%(keys)s)"""


@dataclass
class Handled:
    """What one foreign message contributes to a batch."""

    rows: list[tuple] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    status: list[tuple[str, str, datetime]] = field(default_factory=list)
    side: list[tuple] = field(default_factory=list)  # ("attrs"|"device"|"quarantine", ...)
    duplicates: int = 0
    unknown: int = 0
    seqs: list[tuple[str, int]] = field(default_factory=list)  # (sensor_id, seq)


class SourceHub:
    """The configured sources of one process (see module docstring)."""

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        try:
            self.sources = [sources.get(n) for n in settings.sources]
        except KeyError as exc:
            raise ConfigError(f"CITYPULSE_SOURCES (sources): {exc.args[0]}") from None
        try:
            self.mappings = {s.name: mp.load(s.name, settings.sources_mapping_dir)
                             for s in self.sources}
        except mp.MappingError as exc:
            raise ConfigError(str(exc)) from None
        self.mqtt = [s for s in self.sources if s.transport == "mqtt"]
        self.aliases: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        self._seq: dict[tuple[str, str], tuple[int, int]] = {}
        self._recorded: set[tuple[str, str, str | None]] = set()  # devices with a row
        r = registry if registry is not None else CollectorRegistry()
        p = "citypulse_ingest_source_"
        self.m_readings = Counter(p + "readings", "Reading rows accepted per source",
                                  ["source"], registry=r)
        self.m_dead = Counter(p + "dead_letters", "Dead letters per source", ["source", "reason"],
                              registry=r)
        self.m_gaps = Counter(p + "seq_gaps", "Sequence (fCnt) numbers skipped per source",
                              ["source"], registry=r)
        self.m_late = Counter(p + "seq_late", "Late readings filling a gap; loss = gaps - late",
                              ["source"], registry=r)
        self.m_quarantined = Counter(p + "quarantined", "Messages of quarantined devices",
                                     ["source"], registry=r)

    @property
    def active(self) -> bool:
        """Whether any MQTT source is configured."""
        return bool(self.mqtt)

    def subscriptions(self) -> list[str]:
        """Topic filters of the configured MQTT sources."""
        return [t for s in self.mqtt for t in s.subscriptions()]

    def claim(self, topic: str) -> Source | None:
        """The configured source ``topic`` belongs to, if any."""
        for s in self.mqtt:
            if s.claims(topic):
                return s
        return None

    def refresh(self, conn: psycopg.Connection) -> None:
        """Reload device aliases (registry properties ``<source>_device``)."""
        with conn.cursor() as cur:
            cur.execute(_ALIASES, {"keys": [f"{src.name}_device" for src in self.sources]})
            aliases = {(k.removesuffix("_device"), v): sid for k, v, sid in cur}
        self.aliases = aliases

    def resolve(self, source: str, device: str, registry: Map) -> str | None:
        """The registry sensor_id of ``device`` as ``source`` names it, else None."""
        sid = self.mappings[source].devices.get(device) or self.aliases.get((source, device))
        if sid is None and device in registry:
            sid = device
        return sid

    def handle(self, src: Source, topic: str, payload: bytes, received_ms: int,
               rate_limited: bool, registry: Map, window: Window, *,
               content_type: str | None = None, sensor_id: str | None = None) -> Handled:
        """Decode, resolve and validate one foreign message (never raises on bad input)."""
        out = Handled()
        if rate_limited:
            out.dead.append(dead_letter(received_ms, topic, wp.RATE_LIMITED, payload,
                                        f"over {self.settings.device_rate_limit:g} messages/s"))
            return out
        mapping = self.mappings[src.name]
        max_bytes = self.settings.max_payload_bytes
        if src.transport == "http":
            f = src.decode_body(payload, content_type, sensor_id, received_ms, mapping, max_bytes)
        else:
            f = src.decode(topic, payload, received_ms, mapping, max_bytes)
        out.dead.extend(dead_letter(received_ms, topic, r.reason, r.fragment, r.detail,
                                    r.sensor_id) for r in f.rejected)
        readings: list[wp.Reading] = []
        quarantined: dict[str, int] = {}
        scope = src.scope_of(topic)
        for r in f.readings:
            sid = self.resolve(src.name, r.sensor_id, registry)
            if sid is None:
                self._unknown(src, topic, received_ms, r.sensor_id,
                              orjson.dumps({"device": r.sensor_id, **wp.reading_obj(
                                  r.ts_ms, dict(r.values), r.seq)}), out, quarantined)
                continue
            if (src.name, r.sensor_id, scope) not in self._recorded:  # a route for downlinks
                self._recorded.add((src.name, r.sensor_id, scope))
                out.side.append(("device", src.name, r.sensor_id, sid, None, "{}", r.ts_ms,
                                 scope))
            readings.append(wp.Reading(sid, r.ts_ms, r.seq, r.values))
            if r.seq is not None:
                out.seqs.append((sid, r.seq))
        for ev in f.events:
            sid = self.resolve(src.name, ev.device, registry)
            if sid is None:
                self._unknown(src, topic, received_ms, ev.device, payload, out, quarantined)
                continue
            if ev.status is not None:
                out.status.append((sid, ev.status, to_time(ev.ts_ms)))
            if ev.attributes is not None:
                out.side.append(("attrs", sid, ev.attributes.decode()))
            out.side.append(("device", src.name, ev.device, sid, ev.status,
                             orjson.dumps(dict(ev.health)).decode(), ev.ts_ms, scope))
        for dev, n in quarantined.items():
            out.side.append(("quarantine", src.name, dev, received_ms, n, payload[:4096]))
        if readings:
            v = validate(wp.Decoded(tuple(readings), ()), Topic(TELEMETRY, ""), topic, payload,
                         received_ms, registry, window)
            out.rows.extend(v.rows)
            out.dead.extend(v.dead)
            out.duplicates += v.duplicates
        return out

    def _unknown(self, src: Source, topic: str, received_ms: int, device: str, data: bytes,
                 out: Handled, quarantined: dict[str, int]) -> None:
        out.unknown += 1
        q = self.settings.sources_quarantine
        if q:
            quarantined[device] = quarantined.get(device, 0) + 1
        out.dead.append(dead_letter(
            received_ms, topic, wp.UNKNOWN_SENSOR, data,
            f"{src.name} device {device!r} is not in the registry"
            + (" (quarantined: map it with the deployment column "
               f"{src.name}_device or the mapping file's devices:)" if q else ""), device))

    # --- after the commit ---------------------------------------------------------------------
    def account(self, source: str, h: Handled) -> None:
        """Per-source metrics of a committed (or spooled) message."""
        self.m_readings.labels(source).inc(len(h.rows))
        for d in h.dead:
            self.m_dead.labels(source, d.reason).inc()
        q = sum(1 for s in h.side if s[0] == "quarantine")
        if q:
            self.m_quarantined.labels(source).inc(q)
        gaps = late = 0
        with self._lock:
            for sid, seq in h.seqs:
                key = (source, sid)
                seen = self._seq.get(key)
                if seen is None:
                    self._seq[key] = (seq, seq)
                    continue
                low, high = seen
                if seq > high:
                    gaps += seq - high - 1
                    self._seq[key] = (low, seq)
                elif seq < low:
                    gaps += low - seq - 1
                    self._seq[key] = (seq, high)
                elif seq not in (low, high):
                    late += 1
        if gaps:
            self.m_gaps.labels(source).inc(gaps)
        if late:
            self.m_late.labels(source).inc(late)

    @staticmethod
    def write_side(conn: psycopg.Connection, side) -> None:
        """Write side records (attributes, device status/health, quarantine) in ``conn``."""
        attrs = [(s[2], s[1]) for s in side if s[0] == "attrs"]
        devices = [(*s[1:7], s[7] if len(s) > 7 else None) for s in side if s[0] == "device"]
        quarantine = [(s[1], s[2], s[3], s[3], s[4], s[5]) for s in side if s[0] == "quarantine"]
        with conn.cursor() as cur:
            if attrs:
                cur.executemany(_ATTRS, attrs)
            if devices:
                cur.executemany(_DEVICE, devices)
            if quarantine:
                cur.executemany(_QUARANTINE, quarantine)
