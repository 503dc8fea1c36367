"""The one way out: what leaves, what never does, and the evidence of both."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import polars as pl
import pyarrow.parquet as pq
import pytest

from sharing import evidence, records
from sharing.exporter import ShareRefused, ShareRequest, share
from sharing.policy import load_policy

WIDE = (datetime.now(UTC) - timedelta(days=1), datetime.now(UTC) + timedelta(minutes=5))


def _all_text(path, fmt: str) -> bytes:
    """Every byte of the file, plus (Parquet) every decoded value, name and metadata."""
    raw = path.read_bytes()
    if fmt != "parquet":
        return raw
    f = pq.ParquetFile(io.BytesIO(raw))
    t = f.read()
    meta = str(f.metadata.metadata) + str(f.schema_arrow)
    cells = "\n".join(str(v) for col in t.columns for v in col.to_pylist())
    return raw + meta.encode() + cells.encode()


def _export(conn, settings, scenario, dataset, fmt, out, recipient=None):
    policy = load_policy(settings)
    return share(conn, settings, policy, ShareRequest(scenario, dataset, fmt, recipient,
                                                      *WIDE), out)


@pytest.mark.parametrize("fmt", ["csv", "parquet", "geojson"])
def test_forbidden_and_unlisted_fields_never_leave(share_conn, share_settings, tmp_path, fmt):
    conn = share_conn
    gateways = [r[0] for r in conn.execute(
        "SELECT DISTINCT gateway_id FROM citypulse.sensors WHERE gateway_id IS NOT NULL")]
    sensors = [r[0] for r in conn.execute("SELECT sensor_id FROM citypulse.sensors")]
    props = [r[0] for r in conn.execute(
        "SELECT DISTINCT props->>'segment_id' FROM citypulse.sensors "
        "WHERE props ? 'segment_id' LIMIT 20")]
    out = tmp_path / f"registry.{fmt}"
    d = _export(conn, share_settings, "two_labs", "registry", fmt, out, "lab-a")
    assert d.rows == len(sensors) and d.decision.delivered == ["sensor_id", "kind", "zone_id"]
    withheld = {w["field"]: w["reason"] for w in d.decision.withheld}
    assert withheld["gateway_id"].startswith("core")  # listed, but graded core
    assert withheld["lon"].startswith("unlisted") and withheld["props"].startswith("core")
    blob = _all_text(out, fmt)
    for name in (b"gateway_id", b"props", b"segment_id", b'"lon"', b"lat"):
        assert name not in blob, name
    leaked = [v for v in gateways + sensors + props if v.encode() in blob]
    assert not leaked, leaked[:5]
    assert b"water" in blob and b"zone" in blob  # the delivered fields are there
    rec = evidence.get(conn, str(d.evidence["evidence_id"]))
    assert rec["sha256"] == d.sha256 and rec["row_count"] == d.rows
    assert {w["field"] for w in rec["fields_withheld"]} >= {"gateway_id", "lon", "lat", "props"}


def test_negative_list_blocks_cross_border_until_approved(share_conn, share_settings, tmp_path):
    conn = share_conn
    # the OD matrix: trips is on the negative list, the zones are not
    d1 = _export(conn, share_settings, "port_logistics_sg", "logistics.od", "csv",
                 tmp_path / "od1.csv")
    head1 = (tmp_path / "od1.csv").read_text().splitlines()[0]
    assert head1 == "time,origin_zone,dest_zone" and d1.rows >= 2
    trips = next(w for w in d1.decision.withheld if w["field"] == "trips")
    assert trips["outcome"] == "needs_approval" and "Singapore" in trips["reason"]
    # raw truck tracks: every field negative-listed, so nothing may go
    with pytest.raises(ShareRefused) as refused:
        _export(conn, share_settings, "port_logistics_sg", "readings.logistics", "csv",
                tmp_path / "tracks.csv")
    assert not (tmp_path / "tracks.csv").exists()
    ref = "SA-2026-0042"
    records.record_approval(conn, "port_logistics_sg", ref, "security_assessment", "officer")
    try:
        d2 = _export(conn, share_settings, "port_logistics_sg", "logistics.od", "csv",
                     tmp_path / "od2.csv")
    finally:
        records.revoke_approval(conn, "port_logistics_sg", "officer")
    df = pl.read_csv(tmp_path / "od2.csv")
    assert df.columns == ["time", "origin_zone", "dest_zone", "trips"]
    assert df.filter(pl.col("origin_zone") == "port")["trips"].to_list() == [12]
    # k=3: the two trips park -> depot are suppressed
    assert df.filter(pl.col("origin_zone") == "park")["trips"].to_list() == [None]
    e1 = evidence.get(conn, str(d1.evidence["evidence_id"]))
    e2 = evidence.get(conn, str(d2.evidence["evidence_id"]))
    er = evidence.get(conn, str(refused.value.evidence["evidence_id"]))
    assert e1["approval_ref"] is None and "trips" not in e1["fields_delivered"]
    assert e1["destination"] == "Singapore" and e1["outcome"] == "delivered"
    assert e2["approval_ref"] == ref and "trips" in e2["fields_delivered"]
    assert e2["transforms"]["trips"] == ["suppress_small"]
    assert er["outcome"] == "refused" and er["row_count"] == 0
    blocked = {w["field"] for w in er["fields_withheld"] if w["outcome"] == "needs_approval"}
    assert blocked == {"time", "sensor_id", "lon", "lat", "speed_kmh"}


def test_small_counts_are_suppressed(share_conn, share_settings, tmp_path):
    conn = share_conn
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    conn.execute("INSERT INTO citypulse.twin_zone_1m (bucket, zone_id, people, entries, exits) "
                 "VALUES (%s, 'k-small', 3, 1, 0), (%s, 'k-big', 400, 40, 30)", (hour, hour))
    policy = load_policy(share_settings)
    d = share(conn, share_settings, policy, ShareRequest(
        "open_data_portal", "twin.zone_density", "csv", None, hour, hour + timedelta(hours=1)),
        tmp_path / "z.csv")
    df = pl.read_csv(tmp_path / "z.csv")
    small = df.filter(pl.col("zone_id") == "k-small").row(0, named=True)
    big = df.filter(pl.col("zone_id") == "k-big").row(0, named=True)
    assert small["people"] is None and small["entries"] is None and small["exits"] is None
    assert big["people"] == 400 and big["entries"] == 40
    assert d.evidence["transforms"]["people"] == ["suppress_small"]


def test_pseudonyms_stable_per_recipient_and_unjoinable(share_conn, share_settings, tmp_path):
    conn = share_conn

    def ids(recipient, name):
        _export(conn, share_settings, "two_labs", "readings.water", "parquet",
                tmp_path / name, recipient)
        return pl.read_parquet(tmp_path / name)["sensor_id"].unique().to_list()

    a1, a2, b = ids("lab-a", "a1.parquet"), ids("lab-a", "a2.parquet"), ids("lab-b", "b.parquet")
    real = {r[0] for r in conn.execute(
        "SELECT sensor_id FROM citypulse.sensors WHERE kind = 'water'")}
    assert sorted(a1) == sorted(a2) and len(a1) == len(real) > 3
    assert not set(a1) & set(b) and len(b) == len(a1)
    assert not set(a1) & real


def test_a_policy_change_is_logged_with_its_diff(share_conn, share_settings, scenarios_dir,
                                                 tmp_path):
    conn = share_conn
    _export(conn, share_settings, "flood_research", "alerts", "csv", tmp_path / "a.csv")
    f = scenarios_dir / "flood_research.yaml"
    f.write_text(f.read_text().replace("      status:\n", "      status:\n      title:\n"))
    d = _export(conn, share_settings, "flood_research", "alerts", "csv", tmp_path / "b.csv")
    assert "title" in d.decision.delivered
    last = records.policy_log(conn, 1)[0]
    assert last["policy_hash"] == d.evidence["policy_hash"] == load_policy(share_settings).hash
    changed = [ln for ln in last["diff"].splitlines()
               if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    assert changed == ['+      "title": null,'], last["diff"]
