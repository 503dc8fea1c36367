"""Readings -> wire-contract messages: (topic, payload, readings) per message, pure.

:func:`encode_batch` turns a :class:`~device_sim.behaviour.Batch` into gateway payloads for
sensors behind a gateway and single payloads for the others (vectorised with polars);
:func:`encode_batch_reference` does the same one dict at a time (the tests' yardstick).
Deliberately bad readings (``bad`` codes) come out malformed as their code says.

:func:`payload` re-encodes one JSON payload for the wire: JSON (the default) or MessagePack,
with the MQTT 5 content type announcing it (None for JSON, the wire contract's default).
MessagePack carries the same document (``citypulse.wire.payload`` decodes both); a payload
that is not JSON (a simulated garbled message, a status word) is sent unchanged, so a fault
stays a fault: ``payload(b'{"ts": 1, "values": {"speed_kmh": 3}}', "msgpack")``.
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
import orjson
import polars as pl

from citypulse.catalogue import KINDS
from citypulse.wire import payload as wp
from citypulse.wire import topics
from device_sim.behaviour import (
    BAD_JSON,
    BAD_METRIC,
    BAD_RANGE,
    BAD_VALUE,
    KIND_NAMES,
    METRICS,
    Batch,
    Fleet,
)

_NAMES = [tuple(m.name for m in KINDS[k].metrics) for k in KIND_NAMES]
_MAX = [tuple(m.max for m in KINDS[k].metrics) for k in KIND_NAMES]


def _reading_objs(fleet: Fleet, batch: Batch) -> list[dict]:
    """One wire-contract reading object per row of ``batch`` (bad codes applied)."""
    n = len(batch)
    objs: list[Any] = [None] * n
    kinds = fleet.kind[batch.idx]
    seq = batch.seq.tolist()
    ts = batch.ts_ms.tolist()
    for code in np.unique(kinds):
        rows = np.flatnonzero(kinds == code)
        names = _NAMES[code]
        mat = np.column_stack([batch.values[m][rows] for m in names]).tolist()
        for r, vals in zip(rows.tolist(), mat, strict=True):
            objs[r] = {"ts": ts[r], "seq": seq[r],
                       "values": {k: v for k, v in zip(names, vals, strict=True) if v == v}}
    for r in np.flatnonzero(batch.bad).tolist():
        code, obj = int(batch.bad[r]), objs[r]
        vals = obj["values"]
        first = next(iter(vals), None)
        if code == BAD_RANGE and first is not None:
            vals[first] = _MAX[kinds[r]][0] * 10 + 1
        elif code == BAD_METRIC:
            vals["bogus_metric"] = 1.0
        elif code == BAD_VALUE and first is not None:
            vals[first] = "ERR"
        elif code == BAD_JSON:
            obj["__garbled__"] = True
    return objs


def _values_expr() -> pl.Expr:
    """JSON text of a reading's ``values`` object, by kind, skipping absent (null) metrics."""
    expr = None
    for code, names in enumerate(_NAMES):
        parts = [pl.lit(f'"{m}":') + pl.col(m).cast(pl.String) for m in names]
        body = pl.concat_str(parts, separator=",", ignore_nulls=True)
        expr = (pl.when(pl.col("kind") == code) if expr is None
                else expr.when(pl.col("kind") == code)).then(body)
    return expr.otherwise(pl.lit(""))


_VALUES_EXPR = _values_expr()


def encode_batch(fleet: Fleet, batch: Batch, prefix: str, gateway: bool
                 ) -> list[tuple[str, bytes, int]]:
    """(topic, payload, readings) per message: gateway payloads for gateway sensors.

    Vectorised (polars string building); the bytes decode to exactly what
    :func:`encode_batch_reference` (orjson, one dict per reading) sends.
    """
    n = len(batch)
    if n == 0:
        return []
    gws = fleet.gateway_id[batch.idx]
    cols = {m: pl.Series(m, batch.values[m]).fill_nan(None) for m in METRICS}
    df = pl.DataFrame({"ts": batch.ts_ms, "seq": batch.seq, "kind": fleet.kind[batch.idx],
                       **cols})
    reading = df.select(pl.concat_str([
        pl.lit('{"ts":'), pl.col("ts").cast(pl.String), pl.lit(',"seq":'),
        pl.col("seq").cast(pl.String), pl.lit(',"values":{'), _VALUES_EXPR, pl.lit("}}")])
    ).to_series()
    grouped = np.array([g is not None for g in gws.tolist()]) if gateway else np.zeros(n, bool)
    bad = np.flatnonzero(batch.bad)
    if len(bad):
        texts = reading.to_list()
        sub = Batch(batch.idx[bad], batch.seq[bad], batch.ts_ms[bad],
                    {m: v[bad] for m, v in batch.values.items()}, batch.bad[bad])
        for r, obj in zip(bad.tolist(), _reading_objs(fleet, sub), strict=True):
            garbled = obj.pop("__garbled__", False)
            text = orjson.dumps(obj).decode()
            if garbled:
                text = '"<garbled reading>"' if grouped[r] else text[: max(1, len(text) // 2)]
            texts[r] = text
        reading = pl.Series("r", texts, dtype=pl.String)
    sids = fleet.sensor_id[batch.idx]
    out: list[tuple[str, bytes, int]] = []
    single = np.flatnonzero(~grouped)
    if len(single):
        texts = reading.gather(single).to_list() if len(single) < n else reading.to_list()
        head = f"{prefix}/{topics.VERSION}/{topics.TELEMETRY}/"
        out.extend((head + sid, text.encode(), 1)
                   for sid, text in zip(sids[single].tolist(), texts, strict=True))
    if grouped.any():
        rows = np.flatnonzero(grouped)
        g = pl.DataFrame({"gw": pl.Series(gws[rows].tolist(), dtype=pl.String),
                          "sid": pl.Series(sids[rows].tolist(), dtype=pl.String),
                          "r": reading.gather(rows)})
        per_sensor = g.group_by("gw", "sid", maintain_order=True).agg(
            pl.len().alias("n"),
            (pl.lit('"') + pl.first("sid") + pl.lit('":[') + pl.col("r").str.join(",")
             + pl.lit("]")).first().alias("doc"))
        per_gw = per_sensor.group_by("gw", maintain_order=True).agg(
            pl.col("n").sum(), (pl.lit("{") + pl.col("doc").str.join(",") + pl.lit("}"))
            .first().alias("doc"))
        for gw, nr, doc in per_gw.iter_rows():
            out.append((topics.gateway(gw, prefix), doc.encode(), nr))
    return out


def encode_batch_reference(fleet: Fleet, batch: Batch, prefix: str, gateway: bool
                           ) -> list[tuple[str, bytes, int]]:
    """Like :func:`encode_batch`, one Python dict per reading (slow; the tests' yardstick)."""
    objs = _reading_objs(fleet, batch)
    sids = fleet.sensor_id[batch.idx]
    gws = fleet.gateway_id[batch.idx]
    out: list[tuple[str, bytes, int]] = []
    groups: dict[str, dict[str, list]] = {}
    for sid, gw, obj in zip(sids.tolist(), gws.tolist(), objs, strict=True):
        garbled = obj.pop("__garbled__", False)
        if gateway and gw is not None:
            if garbled:
                obj = "<garbled reading>"  # not an object: a malformed fragment
            groups.setdefault(gw, {}).setdefault(sid, []).append(obj)
        else:
            payload = orjson.dumps(obj)
            if garbled:
                payload = payload[: max(1, len(payload) // 2)]  # truncated: not JSON
            out.append((topics.telemetry(sid, prefix), payload, 1))
    for gw, doc in groups.items():
        nr = sum(len(v) for v in doc.values())
        out.append((topics.gateway(gw, prefix), orjson.dumps(doc), nr))
    return out


ENCODINGS = ("json", "msgpack")


def payload(data: bytes, encoding: str) -> tuple[bytes, str | None]:
    """``data`` (JSON) in ``encoding``, with its content type (see the module docstring)."""
    if encoding != "msgpack" or data[:1] not in (b"{", b"["):
        return data, None
    try:
        return msgspec.msgpack.encode(orjson.loads(data)), wp.CONTENT_MSGPACK
    except orjson.JSONDecodeError:
        return data, wp.CONTENT_MSGPACK  # garbled on purpose: announced, and still garbled
