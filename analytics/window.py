"""The alert engine's window on the store: the registry and the freshest readings.

In: a psycopg connection per call, the engine's city model and rate rules' history spans.
Out: ``meta`` (the registry with placement: zone, segment, role, gateway, interval),
``latest`` (latest reading per sensor), ``history`` (recent readings per kind, for rate
rules) and :meth:`Window.current` (latest joined with the registry, with ``fresh``).
Each :meth:`Window.ingest` reads the raw rows that arrived since the previous one (by
reading time, ``lateness_ms`` back); :meth:`Window.catch_up_silent` looks up late rows of
sensors that look silent.
"""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime

import polars as pl
import psycopg
from psycopg import sql

from analytics.findings import CITY, RAW_SCHEMA, SLOTS
from analytics.places import CityModel
from citypulse.catalogue import KINDS


class Window:
    """Registry and readings as of the last ingest (see module docstring)."""

    def __init__(self, city: CityModel, history_ms_of: dict[str, int], lateness_ms: int,
                 meta_refresh_s: float) -> None:
        self.city = city
        self.history_ms_of = history_ms_of
        self.history_ms = max(history_ms_of.values(), default=0)
        self.lateness_ms = lateness_ms
        self.meta_refresh_s = meta_refresh_s
        self.meta: pl.DataFrame | None = None
        self._meta_at = 0.0
        self.latest = pl.DataFrame(schema=RAW_SCHEMA)
        self.history: dict[str, pl.DataFrame] = {}  # kind -> recent readings, rate rules
        self.fetched_to_ms: int | None = None
        self.late_rows = 0

    def refresh_meta(self, conn: psycopg.Connection) -> None:
        """Reload the registry when it is older than ``meta_refresh_s``."""
        if self.meta is None or time.monotonic() - self._meta_at > self.meta_refresh_s:
            self.meta = self.load_meta(conn)
            self._meta_at = time.monotonic()

    def load_meta(self, conn: psycopg.Connection) -> pl.DataFrame:
        """Sensor registry with placement props (zone, segment, role, gateway, interval)."""
        cur = conn.cursor()
        buf = io.BytesIO()
        q = ("COPY (SELECT id, sensor_id, kind, lon, lat, coalesce(gateway_id, ''), "
             "coalesce(props->>'zone_id', props->>'zone', ''), "
             "coalesce(props->>'zone_type', ''), coalesce(props->>'role', ''), "
             "coalesce(props->>'segment_id', props->>'segment', ''), "
             "(props->>'free_flow_kmh')::float8, (props->>'area_m2')::float8, "
             "(props->>'interval_s')::float8, coalesce(props->>'building_id', '') "
             "FROM citypulse.sensors) TO STDOUT (FORMAT CSV)")
        with cur.copy(q) as copy:
            for data in copy:
                buf.write(data)
        cols = ["id", "sensor_id", "kind", "lon", "lat", "gateway_id", "zone_id", "zone_type",
                "role", "segment_id", "free_flow_kmh", "area_m2", "interval_s", "building_id"]
        schema = {"id": pl.Int32, "sensor_id": pl.Utf8, "kind": pl.Utf8, "lon": pl.Float64,
                  "lat": pl.Float64, "gateway_id": pl.Utf8, "zone_id": pl.Utf8,
                  "zone_type": pl.Utf8, "role": pl.Utf8, "segment_id": pl.Utf8,
                  "free_flow_kmh": pl.Float64, "area_m2": pl.Float64, "interval_s": pl.Float64,
                  "building_id": pl.Utf8}
        buf.seek(0)
        if buf.getbuffer().nbytes == 0:
            meta = pl.DataFrame(schema=schema)
        else:
            meta = pl.read_csv(buf, has_header=False, new_columns=cols, schema=schema)
        default_iv = pl.DataFrame({"kind": list(KINDS),
                                   "kind_interval_s": [float(k.interval_s) for k in
                                                       KINDS.values()]})
        meta = meta.join(default_iv, on="kind", how="left").with_columns(
            pl.coalesce("interval_s", "kind_interval_s", pl.lit(60.0)).alias("interval_s"),
            pl.col("gateway_id").fill_null(""), pl.col("role").fill_null(""),
            pl.col("segment_id").fill_null(""), pl.col("zone_type").fill_null(""),
            pl.col("zone_id").fill_null(""), pl.col("building_id").fill_null(""),
        ).drop("kind_interval_s")
        missing = meta.filter(pl.col("zone_id") == "")
        if len(missing) and self.city.zone_lookup is not None:
            zones = self.city.zone_lookup(missing["lon"].to_numpy(), missing["lat"].to_numpy())
            fill = pl.DataFrame({"id": missing["id"],
                                 "zfill": [z or CITY for z in zones]})
            meta = meta.join(fill, on="id", how="left").with_columns(
                pl.when(pl.col("zone_id") == "").then(pl.col("zfill"))
                .otherwise(pl.col("zone_id")).alias("zone_id")).drop("zfill")
        meta = meta.with_columns(pl.when(pl.col("zone_id") == "").then(pl.lit(CITY))
                                 .otherwise(pl.col("zone_id")).alias("zone_id"))
        return meta

    def _fetch(self, conn: psycopg.Connection, lo_ms: int, hi_ms: int) -> pl.DataFrame:
        lo = datetime.fromtimestamp(lo_ms / 1000, UTC)
        hi = datetime.fromtimestamp(hi_ms / 1000, UTC)
        q = sql.SQL(
            "COPY (SELECT sensor, (extract(epoch FROM time) * 1000)::int8, {slots} "
            "FROM citypulse.raw WHERE time > {lo} AND time <= {hi}) TO STDOUT (FORMAT CSV)"
        ).format(slots=sql.SQL(", ").join(map(sql.Identifier, SLOTS)),
                 lo=sql.Literal(lo), hi=sql.Literal(hi))
        return self._copy_rows(conn, q)

    def _copy_rows(self, conn: psycopg.Connection, q: sql.Composable) -> pl.DataFrame:
        """Run a ``COPY (SELECT sensor, t_ms, v0..v7 ...) TO STDOUT`` into a raw-schema frame."""
        buf = io.BytesIO()
        with conn.cursor() as cur, cur.copy(q) as copy:
            for data in copy:
                buf.write(data)
        if buf.getbuffer().nbytes == 0:
            return pl.DataFrame(schema=RAW_SCHEMA)
        buf.seek(0)
        return pl.read_csv(buf, has_header=False, new_columns=list(RAW_SCHEMA),
                           schema=RAW_SCHEMA)

    def ingest(self, conn: psycopg.Connection, now_ms: int) -> int:
        """Read readings that arrived since the last tick; update latest and history."""
        if self.fetched_to_ms is None:
            warm = max((k.interval_s for k in KINDS.values()), default=60) * 3 * 1000
            lo = now_ms - int(max(warm, self.history_ms))
        else:
            lo = self.fetched_to_ms - self.lateness_ms
        new = self._fetch(conn, lo, now_ms)
        self.fetched_to_ms = now_ms
        self._take_latest(new)
        # history per kind, each as long as its longest rate rule needs; the fetch holds every
        # reading in (lo, now], so it replaces that slice (late rows included, none twice)
        for kind, span in self.history_ms_of.items():
            old = self.history.get(kind)
            keep = (old.filter((pl.col("t") <= lo) & (pl.col("t") > now_ms - span))
                    if old is not None else None)
            h = new
            if self.meta is not None and len(new):
                ids = self.meta.filter(pl.col("kind") == kind)["id"]
                h = new.filter(pl.col("sensor").is_in(ids.implode())
                               & (pl.col("t") > now_ms - span))
            self.history[kind] = pl.concat([keep, h]) if keep is not None else h
        return len(new)

    def catch_up_silent(self, conn: psycopg.Connection, now_ms: int) -> int:
        """Readings the time-window fetch missed, for sensors that look silent.

        ``ingest`` reads rows by their reading time, ``lateness_s`` back; a row committed
        later than that (a collector stalled for a few seconds, a spool backfill) is never
        seen, and its sensor would look offline, then back: a flapping alert.  So sensors
        silent for more than one and a half intervals are looked up in the store directly (by
        the (sensor, time) index; only the silent few, not the fleet) and their latest
        readings taken in.
        """
        assert self.meta is not None
        seen = self.meta.select("id", "interval_s").join(
            self.latest.select("sensor", "t"), left_on="id", right_on="sensor", how="left")
        silent = seen.filter(pl.col("t").is_null()
                             | (pl.lit(now_ms) - pl.col("t") > pl.col("interval_s") * 1500))
        if silent.is_empty() or silent.height > 50_000:
            return 0
        since = datetime.fromtimestamp((now_ms - max(self.history_ms, 600_000)) / 1000, UTC)
        until = datetime.fromtimestamp(now_ms / 1000, UTC)
        q = sql.SQL(
            "COPY (SELECT DISTINCT ON (sensor) sensor, (extract(epoch FROM time) * 1000)::int8, "
            "{slots} FROM citypulse.raw WHERE sensor = ANY({ids}) AND time > {lo} "
            "AND time <= {hi} ORDER BY sensor, time DESC) TO STDOUT (FORMAT CSV)"
        ).format(slots=sql.SQL(", ").join(map(sql.Identifier, SLOTS)),
                 ids=sql.Literal(silent["id"].to_list()), lo=sql.Literal(since),
                 hi=sql.Literal(until))
        found = self._copy_rows(conn, q)
        late = found.join(self.latest.select("sensor", pl.col("t").alias("had")), on="sensor",
                          how="left").filter(pl.col("had").is_null()
                                             | (pl.col("t") > pl.col("had"))).drop("had")
        if late.is_empty():
            return 0
        self._take_latest(late)
        self.late_rows += late.height
        return late.height

    def _take_latest(self, rows: pl.DataFrame) -> None:
        """Fold readings into the latest reading per sensor."""
        if len(rows):
            self.latest = (pl.concat([self.latest, rows]).sort("t")
                           .unique(subset="sensor", keep="last"))

    def current(self, now_ms: int) -> pl.DataFrame:
        """Latest reading per sensor joined with the registry, with freshness."""
        assert self.meta is not None
        cur = self.meta.join(self.latest, left_on="id", right_on="sensor", how="left")
        return cur.with_columns(
            ((pl.lit(now_ms) - pl.col("t")) <= pl.col("interval_s") * 3000).fill_null(False)
            .alias("fresh"))
