"""Every dataset citypulse can share, and its fields, derived from the store and catalogue.

In: nothing (readings datasets come from :mod:`citypulse.catalogue`, one per kind).
Out: :data:`DATASETS`, name -> :class:`Dataset`; :func:`select_sql` builds the one query
that fetches only the named fields of a dataset for a time range.

Field roles: ``time`` (the dataset's time), ``id`` (identifiers: may be pseudonymised),
``lon``/``lat`` (coordinates: may be rounded), ``space`` (zone or segment key), ``measure``
(numbers; ``agg`` says how aggregation combines them), ``text``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType

from psycopg import sql

from citypulse.catalogue import KINDS

CONTRIBUTORS = "contributors"  # rows (or distinct sources) behind an aggregated row


@dataclass(frozen=True)
class Field:
    """One field of a dataset: name, role, SQL expression, how aggregation combines it."""

    name: str
    role: str
    expr: str
    agg: str = "mean"  # mean | sum | max (measures only)


@dataclass(frozen=True)
class Dataset:
    """A shareable dataset: its fields, its source and how it may be aggregated."""

    name: str
    description: str
    fields: tuple[Field, ...]
    source: str
    time_expr: str | None
    spaces: tuple[str, ...] = ()  # space aggregations it supports: zone, segment, grid
    kind: str | None = None
    placement: str | None = None

    def field(self, name: str) -> Field | None:
        """The field called ``name`` (None if the dataset has none)."""
        return next((f for f in self.fields if f.name == name), None)

    @property
    def field_names(self) -> tuple[str, ...]:
        """Field names, with the aggregation's contributors count last."""
        return tuple(f.name for f in self.fields) + ((CONTRIBUTORS,) if self.time_expr else ())


def _readings(kind_name: str) -> Dataset:
    k = KINDS[kind_name]
    fields = [Field("time", "time", "r.time"), Field("sensor_id", "id", "s.sensor_id")]
    metric_names = {m.name for m in k.metrics}
    if not {"lon", "lat"} <= metric_names:  # trackers report their own position
        fields += [Field("lon", "lon", "s.lon"), Field("lat", "lat", "s.lat")]
    fields.append(Field("zone_id", "space", "p.zone_id"))
    spaces = ("zone", "grid")
    if k.placement == "segment":
        fields.append(Field("segment_id", "space", "p.segment_id"))
        spaces = ("zone", "segment", "grid")
    for slot, m in enumerate(k.metrics):
        role = m.name if m.name in ("lon", "lat") else "measure"
        agg = "sum" if "in the interval" in m.description else "mean"
        fields.append(Field(m.name, role, f"r.v{slot}", agg))
    source = ("citypulse.raw r JOIN citypulse.sensors s ON s.id = r.sensor "
              f"AND s.kind = '{k.name}' "
              "LEFT JOIN citypulse.sensor_placement p ON p.sensor = r.sensor")
    return Dataset(f"readings.{k.name}", f"raw readings of {k.description} sensors",
                   tuple(fields), source, "r.time", spaces, k.name, k.placement)


def _m(name: str, agg: str = "mean") -> Field:
    return Field(name, "measure", f"t.{name}", agg)


_STATIC = (
    Dataset("twin.segment_flows", "traffic per directed road segment and minute (the twin)",
            (Field("time", "time", "t.bucket"), Field("segment_id", "space", "t.segment_id"),
             _m("sensors"), _m("vehicles", "sum"), _m("flow_veh_h"), _m("speed_kmh"),
             _m("occupancy_pct"), _m("congestion")),
            "citypulse.twin_segment_1m t", "t.bucket", ("segment",)),
    Dataset("twin.zone_density", "people per zone and minute (the twin)",
            (Field("time", "time", "t.bucket"), Field("zone_id", "space", "t.zone_id"),
             _m("counters"), _m("people"), _m("density_per_1000m2"), _m("entries", "sum"),
             _m("exits", "sum"), _m("trucks")),
            "citypulse.twin_zone_1m t", "t.bucket", ("zone",)),
    Dataset("twin.zone_flows", "estimated people flows between neighbouring zones per minute",
            (Field("time", "time", "t.bucket"), Field("zone_a", "space", "t.zone_a"),
             Field("zone_b", "space", "t.zone_b"), _m("persons", "sum")),
            "citypulse.twin_zone_flow_1m t", "t.bucket", ("zone",)),
    Dataset("logistics.od", "truck trips between zones per hour (origin-destination matrix)",
            (Field("time", "time", "t.hour"), Field("origin_zone", "space", "t.origin_zone"),
             Field("dest_zone", "space", "t.dest_zone"), _m("trips", "sum")),
            "citypulse.twin_od_hourly t", "t.hour", ()),
    Dataset("logistics.trips", "individual truck trips between depot zones",
            (Field("time", "time", "t.depart"), Field("truck_id", "id", "s.sensor_id"),
             Field("origin_zone", "space", "t.origin_zone"),
             Field("dest_zone", "space", "t.dest_zone"), Field("arrive", "text", "t.arrive")),
            "citypulse.twin_trips t JOIN citypulse.sensors s ON s.id = t.sensor",
            "t.depart", ()),
    Dataset("alerts", "alerts with their place and lifecycle",
            (Field("time", "time", "a.started_at"), Field("alert_id", "id", "a.id::text"),
             Field("rule", "text", "a.rule"), Field("severity", "text", "a.severity"),
             Field("status", "text", "a.status"), Field("title", "text", "a.title"),
             Field("entity_kind", "text", "a.entity_kind"),
             Field("entity_id", "id", "a.entity_id"), Field("zone_id", "space", "a.zone_id"),
             Field("lon", "lon", "a.lon"), Field("lat", "lat", "a.lat"),
             Field("resolved_at", "text", "a.resolved_at")),
            "citypulse.alerts a", "a.started_at", ()),
    Dataset("registry", "the sensor registry (what is installed where)",
            (Field("sensor_id", "id", "s.sensor_id"), Field("kind", "text", "s.kind"),
             Field("lon", "lon", "s.lon"), Field("lat", "lat", "s.lat"),
             Field("gateway_id", "id", "s.gateway_id"), Field("zone_id", "space", "p.zone_id"),
             Field("segment_id", "space", "p.segment_id"), Field("props", "text", "s.props")),
            "citypulse.sensors s LEFT JOIN citypulse.sensor_placement p ON p.sensor = s.id",
            None, ()),
)

DATASETS: MappingProxyType = MappingProxyType(
    {d.name: d for d in (*(_readings(k) for k in KINDS), *_STATIC)})


def select_sql(ds: Dataset, names: list[str], lo: datetime | None, hi: datetime | None
               ) -> sql.Composed:
    """``SELECT`` of only ``names`` (fields of ``ds``) for ``[lo, hi)``, ordered by time.

    Times come out as epoch microseconds (int8), text as text.  Expressions and sources
    are this module's constants; names are checked against the dataset; the bounds are
    literals quoted by psycopg (so the query can run inside ``COPY``).
    """
    cols = []
    for n in names:
        f = ds.field(n)
        if f is None:
            raise KeyError(f"{ds.name} has no field {n!r}")
        expr = {"text": f"({f.expr})::text",
                "time": f"(extract(epoch FROM {f.expr}) * 1000000)::int8"}.get(f.role, f.expr)
        cols.append(sql.SQL(expr + " AS ") + sql.Identifier(n))
    q = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(cols), sql.SQL(ds.source))
    if ds.time_expr and lo is not None and hi is not None:
        q += sql.SQL(" WHERE {t} >= {lo} AND {t} < {hi}").format(
            t=sql.SQL(ds.time_expr), lo=sql.Literal(lo), hi=sql.Literal(hi))
    if ds.time_expr:
        q += sql.SQL(" ORDER BY {}").format(sql.SQL(ds.time_expr))
    return q
