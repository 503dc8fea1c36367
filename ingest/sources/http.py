"""HTTP push (``POST /api/v1/ingest``): the wire contract's JSON, or CSV, from third parties.

In: a request body, its content type and an optional ``sensor_id`` (query parameter).
JSON bodies: with ``sensor_id``, a single reading or an array (the telemetry shape); without,
objects carrying their own ``"sensor_id"`` (one or an array), else the gateway shape
``{"<sensor_id>": [readings]}``.  CSV (``text/csv``): a header ``sensor_id,ts[,seq],<field>...``
then one reading per line (empty cells skipped).  Out: :class:`~ingest.sources.base.Foreign`
(fields mapped through ``mappings/http.yaml``: catalogue names pass through).

Trust: ``api_key`` (the key's scope ``ingest:http`` or ``ingest:*`` admits the client; the
body names sensors).  Served by ``dashboards/ingest_api.py``; no MQTT topics.
"""

from __future__ import annotations

import csv
import io

from citypulse.wire import payload as wp
from citypulse.wire.topics import GATEWAY, TELEMETRY, Topic
from ingest.sources.base import API_KEY, Foreign, Source, fragment, load_json, map_reading
from ingest.sources.mapping import Mapping

CSV_TYPES = ("text/csv", "application/csv")


class HttpPush(Source):
    """The HTTP push adapter."""

    name = "http"
    title = "HTTP push: POST /api/v1/ingest (wire-contract JSON or CSV, API key ingest:http)"
    trust = API_KEY
    transport = "http"

    def decode(self, topic: str, payload: bytes, received_ms: int, mapping: Mapping,
               max_bytes: int) -> Foreign:
        """See :class:`~ingest.sources.base.Source`."""
        sensor = topic.partition("/")[2] or None
        return self.decode_body(payload, None, sensor, received_ms, mapping, max_bytes)

    def decode_body(self, body: bytes, content_type: str | None, sensor_id: str | None,
                    received_ms: int, mapping: Mapping, max_bytes: int) -> Foreign:
        """Decode a request body (never raises)."""
        ctype = (content_type or "").split(";")[0].strip().lower()
        if len(body) > max_bytes:
            return Foreign((), (wp.Rejected(wp.TOO_LARGE, f"{len(body)} bytes > {max_bytes}",
                                            body, sensor_id),))
        if ctype in CSV_TYPES:
            return _csv(body, received_ms, mapping)
        if sensor_id:
            d = wp.decode(body, Topic(TELEMETRY, sensor_id), received_ms, max_bytes=max_bytes)
            return _mapped(d, mapping)
        doc, bad = load_json(body, max_bytes, None)
        if bad is not None:
            return Foreign((), (bad,))
        items = doc if isinstance(doc, list) else [doc]
        if items and all(isinstance(i, dict) and "sensor_id" in i for i in items):
            gw: dict[str, list] = {}
            rej: list[wp.Rejected] = []
            for i in items:
                sid = i.get("sensor_id")
                if not isinstance(sid, str) or not sid:
                    rej.append(wp.Rejected(wp.MALFORMED, "sensor_id must be a non-empty string",
                                           fragment(i)))
                    continue
                gw.setdefault(sid, []).append({k: v for k, v in i.items() if k != "sensor_id"})
            d = wp.decode(fragment(gw), Topic(GATEWAY, ""), received_ms, max_bytes=max_bytes * 2)
            return _mapped(wp.Decoded(d.readings, tuple(rej) + d.rejected), mapping)
        d = wp.decode(body, Topic(GATEWAY, ""), received_ms, max_bytes=max_bytes)
        return _mapped(d, mapping)


def _mapped(d: wp.Decoded, mapping: Mapping) -> Foreign:
    out: list[wp.Reading] = []
    rej = list(d.rejected)
    for r in d.readings:
        map_reading(r.sensor_id, r.ts_ms, r.seq, r.values, mapping, (), out, rej)
    return Foreign(tuple(out), tuple(rej))


def _csv(body: bytes, received_ms: int, mapping: Mapping) -> Foreign:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return Foreign((), (wp.Rejected(wp.MALFORMED, f"CSV is not UTF-8: {exc}", body),))
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if not header or header[:2] != ["sensor_id", "ts"]:
        return Foreign((), (wp.Rejected(wp.MALFORMED, "CSV header must start sensor_id,ts "
                                        "(then optional seq, then fields)", body[:4096]),))
    has_seq = len(header) > 2 and header[2] == "seq"
    fields = header[3 if has_seq else 2:]
    out: list[wp.Reading] = []
    rej: list[wp.Rejected] = []
    for line, row in enumerate(rows, start=2):
        if not row:
            continue
        raw = ",".join(row).encode()
        if len(row) != len(header):
            rej.append(wp.Rejected(wp.MALFORMED, f"line {line}: {len(row)} cells, header has "
                                   f"{len(header)}", raw))
            continue
        sid, ts_raw = row[0].strip(), row[1].strip()
        ts = wp.parse_ts(int(ts_raw) if ts_raw.isdigit() else ts_raw or None, received_ms)
        if not sid or ts is None:
            rej.append(wp.Rejected(wp.BAD_TIMESTAMP if sid else wp.MALFORMED,
                                   f"line {line}: " + ("bad ts" if sid else "empty sensor_id"),
                                   raw, sid or None))
            continue
        seq = None
        if has_seq and row[2].strip():
            if not row[2].strip().isdigit():
                rej.append(wp.Rejected(wp.MALFORMED, f"line {line}: seq must be a non-negative "
                                       "integer", raw, sid))
                continue
            seq = int(row[2])
        vals = []
        for name, cell in zip(fields, row[3 if has_seq else 2:], strict=True):
            cell = cell.strip()
            if not cell:
                continue
            try:
                vals.append((name, float(cell)))
            except ValueError:
                vals.append((name, cell))  # map_reading rejects it as malformed
        map_reading(sid, ts, seq, vals, mapping, (), out, rej)
    return Foreign(tuple(out), tuple(rej))


SOURCE = HttpPush()
