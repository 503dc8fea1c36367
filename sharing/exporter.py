"""The one way out: every share (CLI or HTTP) is made by :func:`share`.

In: a connection, the settings, the policy, a :class:`ShareRequest` and an output path.
Out: a :class:`Delivery` (the file written, its row count, byte count and SHA-256, the
decision and the evidence entry).  Steps: the policy decides every field
(:meth:`sharing.policy.Policy.decide`, with the scenario's recorded approval); only the
delivered fields (and what their aggregation needs) are read from the store, hour by
hour; the aggregation and each field's transforms run; the file is written and hashed;
the evidence entry is chained and signed.  A request with nothing deliverable is refused
and the refusal is evidenced too (:class:`ShareRefused`).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import psycopg
import shapely
from psycopg import sql

from citypulse.settings import Settings
from sharing import evidence, keys, records
from sharing.datasets import CONTRIBUTORS, DATASETS, Dataset, select_sql
from sharing.formats import writer
from sharing.policy import Decision, Policy
from sharing.transforms import REGISTRY, Context
from sharing.transforms import aggregate as agg_mod

CHUNK = timedelta(hours=1)


class ShareError(ValueError):
    """The request itself is wrong (unknown scenario, dataset, recipient, bad range)."""


class ShareRefused(PermissionError):
    """Nothing of the request may leave; ``evidence`` is the entry recording the refusal."""

    def __init__(self, msg: str, entry: dict) -> None:
        super().__init__(msg)
        self.evidence = entry


@dataclass(frozen=True)
class ShareRequest:
    """What is asked: scenario, dataset, recipient, time range, format, channel."""

    scenario: str
    dataset: str
    fmt: str = "csv"
    recipient: str | None = None
    lo: datetime | None = None
    hi: datetime | None = None
    channel: str = "cli"
    request_id: str | None = None


@dataclass(frozen=True)
class Delivery:
    """A completed share."""

    path: Path
    rows: int
    byte_count: int
    sha256: str
    decision: Decision
    evidence: dict


_DTYPES = {"time": pl.Datetime("us", "UTC"), "id": pl.Utf8, "text": pl.Utf8, "space": pl.Utf8,
           "lon": pl.Float64, "lat": pl.Float64, "measure": pl.Float64}


def _dtype(ds: Dataset, name: str):
    return pl.Int64 if name == CONTRIBUTORS else _DTYPES[ds.field(name).role]


def _fetch(conn: psycopg.Connection, ds: Dataset, names: list[str], lo, hi) -> pl.DataFrame:
    """The named fields for [lo, hi) as one row of column arrays (binary), into polars.

    One array per column is far cheaper than one message per row (COPY) or one Python
    tuple per row (fetchall).
    """
    q = sql.SQL("SELECT {} FROM ({}) s").format(
        sql.SQL(", ").join(sql.SQL("array_agg({})").format(sql.Identifier(n)) for n in names),
        select_sql(ds, names, lo, hi))
    with conn.cursor(binary=True) as cur:
        cols = cur.execute(q).fetchone()
    if not cols or cols[0] is None:
        return pl.DataFrame(schema={n: _dtype(ds, n) for n in names})
    wire = {n: pl.Int64 if ds.field(n).role == "time" else _dtype(ds, n) for n in names}
    df = pl.DataFrame(dict(zip(names, cols, strict=True)), schema=wire)
    times = [n for n in names if ds.field(n).role == "time"]
    return df.with_columns(pl.col(t).cast(pl.Datetime("us", "UTC")) for t in times)


def _windows(ds: Dataset, lo: datetime, hi: datetime) -> Iterator[tuple]:
    if not ds.time_expr:
        yield None, None
        return
    t = lo
    while t < hi:
        end = min(hi, (t.replace(minute=0, second=0, microsecond=0) + CHUNK))
        yield t, end
        t = end


def _geoms(conn: psycopg.Connection, fmt: str, delivered: list[str]) -> dict:
    if fmt != "geojson":
        return {}
    out = {}
    for key, table, idcol in (("zone_id", "twin_zones", "zone_id"),
                              ("segment_id", "twin_segments", "segment_id")):
        if key in delivered:
            q = sql.SQL("SELECT {}, geom_wkt FROM citypulse.{}").format(
                sql.Identifier(idcol), sql.Identifier(table))
            for i, wkt in conn.execute(q):
                out[(key, i)] = shapely.geometry.mapping(shapely.from_wkt(wkt))
    return out


def _record(policy: Policy, req: ShareRequest, recipient: str, decision: Decision, sc,
            **extra) -> dict:
    transforms = {f.field: list(f.transforms) for f in decision.fields
                  if f.outcome == "allowed" and f.transforms}
    rule = sc.datasets[req.dataset]
    if rule.aggregate is not None:
        transforms["*"] = [f"aggregate({rule.aggregate.model_dump_json(exclude_none=True)})"]
    return evidence.new_record(
        request_id=req.request_id or uuid.uuid4().hex, channel=req.channel,
        recipient=recipient, scenario=sc.name, dataset=req.dataset,
        policy_hash=policy.hash, fields_delivered=decision.delivered,
        fields_withheld=decision.withheld, transforms=transforms, time_from=req.lo,
        time_to=req.hi, format=req.fmt, destination=sc.destination,
        approval_ref=decision.approval_ref if decision.uses_approval else None, **extra)


def share(conn: psycopg.Connection, settings: Settings, policy: Policy, req: ShareRequest,
          out: Path) -> Delivery:
    """Decide, read, transform, write ``out``, hash it and record the evidence.

    Raises :class:`ShareError` for a wrong request, :class:`ShareRefused` (with the
    evidence of the refusal) when no field may leave.
    """
    try:
        sc = policy.scenario(req.scenario)
        rule = sc.datasets.get(req.dataset)
        if rule is None:
            policy.decide(req.scenario, req.dataset, None)  # raises KeyError, names them
    except KeyError as exc:
        raise ShareError(exc.args[0]) from None
    recipient = req.recipient or (sc.recipients[0].name if len(sc.recipients) == 1 else None)
    if recipient not in sc.recipient_names():
        raise ShareError(f"recipient {recipient!r} is not a recipient of {sc.name}; "
                         f"its recipients: {', '.join(sc.recipient_names())}")
    ds = DATASETS[req.dataset]
    hi = req.hi or datetime.now(UTC)
    lo = req.lo or hi - timedelta(days=1)
    if ds.time_expr and lo >= hi:
        raise ShareError(f"empty time range: from {lo.isoformat()} is not before "
                         f"{hi.isoformat()}")
    req = ShareRequest(**{**req.__dict__, "recipient": recipient,
                          "lo": lo if ds.time_expr else None, "hi": hi if ds.time_expr else None})
    approval = records.active_approval(conn, sc.name) if sc.cross_border else None
    decision = policy.decide(sc.name, req.dataset, approval)
    records.log_policy(conn, policy, f"{req.channel}:{recipient}")
    delivered = decision.delivered
    if not delivered:
        entry = evidence.append(conn, settings, _record(
            policy, req, recipient, decision, sc, row_count=0, byte_count=0,
            sha256=hashlib.sha256(b"").hexdigest(), outcome="refused"))
        raise ShareRefused("no field of this dataset may leave for this scenario: " + "; ".join(
            f"{w['field']}: {w['reason']}" for w in decision.withheld), entry)
    rows, digest = _write(conn, settings, ds, sc, req, delivered, out)
    entry = evidence.append(conn, settings, _record(
        policy, req, recipient, decision, sc, row_count=rows, byte_count=out.stat().st_size,
        sha256=digest, outcome="delivered"))
    return Delivery(out, rows, out.stat().st_size, digest, decision, entry)


def _write(conn, settings, ds: Dataset, sc, req: ShareRequest, delivered: list[str],
           out: Path) -> tuple[int, str]:
    agg = sc.datasets[req.dataset].aggregate
    fetch = [n for n in delivered if n != CONTRIBUTORS]
    source_id = None
    if agg is not None:
        source_id = next((f.name for f in ds.fields if f.role == "id"), None)
        extra = [*agg_mod.space_key(ds, agg), "time" if agg.time else None, source_id]
        fetch += [n for n in extra if n and n not in fetch and ds.field(n)]
    steps = [(n, s) for n in delivered for s in sc.steps.get((req.dataset, n), ())]
    ctx = Context(req.recipient, keys.pseudonym_key(settings) if steps else b"")
    schema = pl.Schema({n: _dtype(ds, n) for n in delivered})
    rows = 0
    try:
        with out.open("wb") as f:
            w = writer(req.fmt, f, schema, _geoms(conn, req.fmt, delivered))
            for lo, hi in _windows(ds, req.lo, req.hi):
                df = _fetch(conn, ds, fetch, lo, hi)
                if agg is not None:
                    df = agg_mod.apply(df, ds, agg, delivered, source_id)
                for name, step in steps:
                    df = REGISTRY[step.name].apply(df, name, step.params, ctx)
                df = df.select(delivered).cast(dict(schema))
                w.write(df)
                rows += df.height
            w.close()
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    h = hashlib.sha256()
    with out.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return rows, h.hexdigest()
