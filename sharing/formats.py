"""Output formats of a share: CSV, Parquet, GeoJSON, written chunk by chunk to a file.

In: an open binary file, the polars schema of the delivered columns, and (GeoJSON) the
shapes of zones and segments.  Out: :func:`writer` returns an object with ``write(df)``
and ``close()``.  Only the columns given are ever written: no index, no extra metadata.
"""

from __future__ import annotations

from typing import BinaryIO

import orjson
import polars as pl
import pyarrow.parquet as pq

FORMATS = ("csv", "parquet", "geojson")
MEDIA_TYPES = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet",
               "geojson": "application/geo+json"}


class _Csv:
    def __init__(self, f: BinaryIO, schema: pl.Schema, geoms: dict) -> None:
        self.f, self.first = f, True
        pl.DataFrame(schema=schema).write_csv(f)  # the header, even with no rows

    def write(self, df: pl.DataFrame) -> None:
        df.write_csv(self.f, include_header=False, datetime_format="%Y-%m-%dT%H:%M:%S%.6fZ")

    def close(self) -> None:
        pass


class _Parquet:
    def __init__(self, f: BinaryIO, schema: pl.Schema, geoms: dict) -> None:
        self.arrow_schema = pl.DataFrame(schema=schema).to_arrow().schema
        self.w = pq.ParquetWriter(f, self.arrow_schema, compression="zstd",
                                  store_schema=False)

    def write(self, df: pl.DataFrame) -> None:
        if df.height:
            self.w.write_table(df.to_arrow().cast(self.arrow_schema))

    def close(self) -> None:
        self.w.close()


class _GeoJson:
    """A FeatureCollection: points from lon/lat, else the zone's or segment's shape."""

    def __init__(self, f: BinaryIO, schema: pl.Schema, geoms: dict) -> None:
        self.f, self.geoms, self.n = f, geoms, 0
        self.point = "lon" in schema and "lat" in schema
        self.shape_key = next((k for k in ("zone_id", "segment_id") if k in schema), None)
        f.write(b'{"type":"FeatureCollection","features":[')

    def write(self, df: pl.DataFrame) -> None:
        if not df.height:
            return
        props = [c for c in df.columns if not (self.point and c in ("lon", "lat"))]
        tcols = [c for c, t in df.schema.items() if isinstance(t, pl.Datetime)]
        out = df.with_columns(pl.col(c).dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ") for c in tcols)
        parts = []
        for row in out.iter_rows(named=True):
            if self.point and row["lon"] is not None and row["lat"] is not None:
                geom = {"type": "Point", "coordinates": [row["lon"], row["lat"]]}
            elif self.shape_key:
                geom = self.geoms.get((self.shape_key, row[self.shape_key]))
            else:
                geom = None
            parts.append(orjson.dumps({"type": "Feature", "geometry": geom,
                                       "properties": {k: row[k] for k in props}}))
        self.f.write((b"," if self.n else b"") + b",".join(parts))
        self.n += len(parts)

    def close(self) -> None:
        self.f.write(b"]}")


def writer(fmt: str, f: BinaryIO, schema: pl.Schema, geoms: dict | None = None):
    """A writer of ``fmt`` (csv | parquet | geojson) for columns ``schema`` into ``f``."""
    cls = {"csv": _Csv, "parquet": _Parquet, "geojson": _GeoJson}.get(fmt)
    if cls is None:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    return cls(f, schema, geoms or {})
