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
import json
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

    def meta_due(self) -> bool:
        """Whether the registry is due for a reload."""
        return self.meta is None or time.monotonic() - self._meta_at > self.meta_refresh_s

    def refresh_meta(self, conn: psycopg.Connection) -> None:
        """Reload the registry when it is older than ``meta_refresh_s``."""
        if self.meta is None or time.monotonic() - self._meta_at > self.meta_refresh_s:
            self.meta = self.load_meta(conn)
            self._meta_at = time.monotonic()

    def load_meta(self, conn: psycopg.Connection) -> pl.DataFrame:
        """Sensors with their placement (zone, segment, role, coverage) and gateway, interval.

        Placement is the one source (``citypulse.sensor_placement``, written by ``registry
        load`` and the twin); sensors not placed on the engine's city yet are placed here
        with the same rule (:func:`citypulse.city.placement.place`).
        """
        cur = conn.cursor()
        buf = io.BytesIO()
        q = sql.SQL(
            "COPY (SELECT s.id, s.sensor_id, s.kind, s.lon, s.lat, coalesce(s.gateway_id, ''), "
            "coalesce(p.zone_id, ''), coalesce(p.role, ''), coalesce(p.segment_id, ''), "
            "p.coverage_m2, (s.props->>'interval_s')::float8, "
            "coalesce(s.props->>'building_id', ''), "
            "(p.sensor IS NOT NULL AND p.city_model = {key})::int, "
            "CASE WHEN p.city_model = {key} THEN NULL ELSE s.props::text END "
            "FROM citypulse.sensors s LEFT JOIN citypulse.sensor_placement p "
            "ON p.sensor = s.id) TO STDOUT (FORMAT CSV)").format(key=sql.Literal(self.city.key))
        with cur.copy(q) as copy:
            for data in copy:
                buf.write(data)
        cols = ["id", "sensor_id", "kind", "lon", "lat", "gateway_id", "zone_id", "role",
                "segment_id", "area_m2", "interval_s", "building_id", "placed", "props"]
        schema = {"id": pl.Int32, "sensor_id": pl.Utf8, "kind": pl.Utf8, "lon": pl.Float64,
                  "lat": pl.Float64, "gateway_id": pl.Utf8, "zone_id": pl.Utf8,
                  "role": pl.Utf8, "segment_id": pl.Utf8, "area_m2": pl.Float64,
                  "interval_s": pl.Float64, "building_id": pl.Utf8, "placed": pl.Int8,
                  "props": pl.Utf8}
        buf.seek(0)
        if buf.getbuffer().nbytes == 0:
            meta = pl.DataFrame(schema=schema)
        else:
            meta = pl.read_csv(buf, has_header=False, new_columns=cols, schema=schema)
        meta = meta.with_columns(*(pl.col(c).fill_null("") for c in (
            "gateway_id", "role", "segment_id", "zone_id", "building_id")))
        todo = meta.filter(pl.col("placed") == 0)
        if len(todo) and self.city.model is not None:
            meta = self._place_missing(meta, todo)
        default_iv = pl.DataFrame({"kind": list(KINDS),
                                   "kind_interval_s": [float(k.interval_s) for k in
                                                       KINDS.values()]})
        ztype = pl.DataFrame({"zone_id": list(self.city.zones),
                              "zone_type": [z["zone_type"] for z in self.city.zones.values()]},
                             schema={"zone_id": pl.Utf8, "zone_type": pl.Utf8})
        meta = meta.join(default_iv, on="kind", how="left").join(
            ztype, on="zone_id", how="left").with_columns(
            pl.coalesce("interval_s", "kind_interval_s", pl.lit(60.0)).alias("interval_s"),
            pl.col("zone_type").fill_null(""),
            pl.lit(None, dtype=pl.Float64).alias("free_flow_kmh"),  # the segment's, below
            pl.when(pl.col("zone_id") == "").then(pl.lit(CITY)).otherwise(pl.col("zone_id"))
            .alias("zone_id"),
        ).drop("kind_interval_s", "placed", "props")
        return meta

    def _place_missing(self, meta: pl.DataFrame, todo: pl.DataFrame) -> pl.DataFrame:
        from citypulse.city.placement import place

        props = [json.loads(x) if x else {} for x in todo["props"].to_list()]
        p = place(self.city.model, todo["kind"].to_numpy(), todo["lon"].to_numpy(),
                  todo["lat"].to_numpy(), props)
        fill = pl.DataFrame({
            "id": todo["id"], "z2": [z or "" for z in p["zone_id"]],
            "r2": [r or "" for r in p["role"]], "s2": [x or "" for x in p["segment_id"]],
            "a2": p["coverage_m2"]},
            schema={"id": pl.Int32, "z2": pl.Utf8, "r2": pl.Utf8, "s2": pl.Utf8,
                    "a2": pl.Float64})
        return meta.join(fill, on="id", how="left").with_columns(
            pl.coalesce("z2", "zone_id").alias("zone_id"),
            pl.coalesce("r2", "role").alias("role"),
            pl.coalesce("s2", "segment_id").alias("segment_id"),
            pl.coalesce(pl.col("a2").fill_nan(None), "area_m2").alias("area_m2"),
        ).drop("z2", "r2", "s2", "a2")

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
