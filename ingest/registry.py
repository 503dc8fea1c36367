"""The sensor registry: load deployment files into ``citypulse.sensors`` and snapshot it.

In: a CSV (``sensor_id,kind,lon,lat[,gateway_id]``, more columns go to ``props``), a
Parquet file with the same columns, or a GeoJSON FeatureCollection of points (properties
``sensor_id``, ``kind``, optional ``gateway_id``).  Out: frozen :class:`SensorRecord` s,
upserted idempotently by ``sensor_id``; :func:`snapshot` returns the in-memory map the
collector validates against::

    records = read_file(Path("deployment.parquet"))     # raises RegistryError naming row/column
    upsert(conn, records)                                # -> (inserted, updated)
    snap = snapshot(conn)                                # sensor_id -> Registered
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg

from citypulse.catalogue import DEVICE_KINDS as KINDS

REQUIRED = ("sensor_id", "kind", "lon", "lat")


class RegistryError(ValueError):
    """A deployment file is wrong; the message names the file, row and column."""


@dataclass(frozen=True, slots=True)
class SensorRecord:
    """One sensor as registered: id, kind, position, optional gateway, extra properties."""

    sensor_id: str
    kind: str
    lon: float
    lat: float
    gateway_id: str | None
    props: str  # JSON object text


@dataclass(frozen=True, slots=True)
class Registered:
    """What the collector needs to know of a sensor: store id, kind, gateway."""

    id: int
    kind: str
    gateway_id: str | None


def _record(src: str, rowno: int, row: dict) -> SensorRecord:
    def bad(col: str, msg: str) -> RegistryError:
        return RegistryError(f"{src}: row {rowno}, column {col!r}: {msg}")

    for col in REQUIRED:
        if row.get(col) is None or (isinstance(row.get(col), str) and not row[col].strip()):
            raise bad(col, "missing value")
    sid = str(row["sensor_id"]).strip()
    if any(c in sid for c in "+#/\x00") or len(sid) > 128:
        raise bad("sensor_id", f"{sid!r} is not a valid topic level")
    kind = str(row["kind"]).strip()
    if kind not in KINDS:
        raise bad("kind", f"unknown kind {kind!r}; known: {', '.join(KINDS)}")
    coords = {}
    for col, lim in (("lon", 180.0), ("lat", 90.0)):
        try:
            v = float(row[col])
        except (TypeError, ValueError):
            raise bad(col, f"{row[col]!r} is not a number") from None
        if not math.isfinite(v) or abs(v) > lim:
            raise bad(col, f"{v} outside [-{lim:g}, {lim:g}]")
        coords[col] = v
    gw = row.get("gateway_id")
    gw = None if gw is None or (isinstance(gw, float) and math.isnan(gw)) else str(gw).strip() or None
    extras = {k: v for k, v in row.items() if k not in (*REQUIRED, "gateway_id") and v is not None}
    try:
        props = json.dumps(extras, default=str, allow_nan=False)
    except ValueError:
        props = json.dumps({k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                            for k, v in extras.items()}, default=str)
    return SensorRecord(sid, kind, coords["lon"], coords["lat"], gw, props)


def _check_columns(src: str, cols: Iterable[str]) -> None:
    missing = [c for c in REQUIRED if c not in set(cols)]
    if missing:
        raise RegistryError(f"{src}: missing column(s) {', '.join(missing)}; "
                            f"need {','.join(REQUIRED)}[,gateway_id]")


def read_file(path: Path) -> list[SensorRecord]:
    """Read a CSV, Parquet or GeoJSON deployment file (by extension)."""
    path = Path(path)
    src = path.name
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import polars as pl

        df = pl.read_parquet(path)
        _check_columns(src, df.columns)
        rows: Iterable[dict] = df.iter_rows(named=True)
    elif suffix in (".geojson", ".json"):
        doc = json.loads(path.read_text())
        rows = []
        for i, feat in enumerate(doc.get("features", []) if isinstance(doc, dict) else []):
            geom = feat.get("geometry") or {}
            if geom.get("type") != "Point":
                raise RegistryError(f"{src}: feature {i + 1}, column 'geometry': need a Point")
            lon, lat = geom["coordinates"][:2]
            rows.append({**(feat.get("properties") or {}), "lon": lon, "lat": lat})
        if not rows:
            raise RegistryError(f"{src}: no point features (need a GeoJSON FeatureCollection)")
    elif suffix == ".csv":
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            _check_columns(src, reader.fieldnames or [])
            rows = [{k: (v if v != "" else None) for k, v in r.items()} for r in reader]
    else:
        raise RegistryError(f"{src}: unknown file type {suffix!r}; use .csv, .parquet or .geojson")
    out: dict[str, SensorRecord] = {}
    for i, row in enumerate(rows, start=1):
        rec = _record(src, i, row)
        out[rec.sensor_id] = rec
    return list(out.values())


_UPSERT = """
INSERT INTO citypulse.sensors (sensor_id, kind, lon, lat, gateway_id, props)
SELECT s.sensor_id, s.kind, s.lon, s.lat, s.gateway_id, s.props::jsonb FROM _reg_stage s
ON CONFLICT (sensor_id) DO UPDATE SET kind = EXCLUDED.kind, lon = EXCLUDED.lon,
    lat = EXCLUDED.lat, gateway_id = EXCLUDED.gateway_id, props = EXCLUDED.props,
    updated_at = now()
WHERE (citypulse.sensors.kind, citypulse.sensors.lon, citypulse.sensors.lat,
       citypulse.sensors.gateway_id, citypulse.sensors.props)
   IS DISTINCT FROM (EXCLUDED.kind, EXCLUDED.lon, EXCLUDED.lat, EXCLUDED.gateway_id,
       EXCLUDED.props)
RETURNING (xmax = 0) AS inserted
"""


def upsert(conn: psycopg.Connection, records: Sequence[SensorRecord]) -> tuple[int, int]:
    """Insert new sensors and update changed ones; return (inserted, updated)."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS _reg_stage (sensor_id text, kind text, "
                    "lon float8, lat float8, gateway_id text, props text) ON COMMIT DELETE ROWS")
        with cur.copy("COPY _reg_stage FROM STDIN") as copy:
            for r in records:
                copy.write_row((r.sensor_id, r.kind, r.lon, r.lat, r.gateway_id, r.props))
        flags = [row[0] for row in cur.execute(_UPSERT).fetchall()]
    inserted = sum(1 for f in flags if f)
    return inserted, len(flags) - inserted


def snapshot(conn: psycopg.Connection) -> dict[str, Registered]:
    """The registry as ``sensor_id -> Registered`` (one query)."""
    with conn.cursor() as cur:
        cur.execute("SELECT sensor_id, id, kind, gateway_id FROM citypulse.sensors")
        return {sid: Registered(i, k, g) for sid, i, k, g in cur}
