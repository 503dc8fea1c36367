"""``citypulse bench share`` and ``citypulse bench share-verify``: figures, as JSON.

bench share: a private PostgreSQL (unless ``--database-url``), ``--sensors`` registered
across the catalogue's kinds in the catalogue's proportions of a city deployment, one day
(``--hours``) of readings of one kind written with :meth:`Store.write_rows`, then exports
through the policy (aggregated by zone and hour, and raw-but-allowed with pseudonymised ids
and rounded coordinates) in CSV and Parquet; rows/s of each.
bench share-verify: ``--entries`` evidence entries appended, then ``verify`` timed.
"""

from __future__ import annotations

import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import typer

from citypulse.catalogue import KINDS, MAX_SLOTS
from citypulse.settings import Settings

# share of each kind in a 200,000-sensor city (the demo deployment's mix)
MIX = {"traffic": 0.30, "people": 0.15, "logistics": 0.05, "air": 0.05, "water": 0.05,
       "fire": 0.30, "gas": 0.05, "noise": 0.05}
BENCH_SCENARIO = """title: bench
purpose: benchmark of the export path
recipients: [{name: bench}]
destination: domestic
datasets:
  readings.KIND:
    aggregate: {space: zone, time: hour}
    fields: {time: , zone_id: , contributors: , METRIC: }
"""
RAW_SCENARIO = """title: bench raw
purpose: benchmark of the export path, raw rows
recipients: [{name: bench}]
destination: domestic
datasets:
  readings.KIND:
    fields:
      time:
      sensor_id: {pseudonymise: {}}
      lon: {round_coords: {decimals: 3}}
      lat: {round_coords: {decimals: 3}}
      METRIC:
"""


def _setup(conn, settings: Settings, sensors: int, kind: str, hours: float, seed: int) -> dict:
    from citypulse.schema import Store

    store = Store.open(conn, settings)
    rng = np.random.default_rng(seed)
    n_kind = int(sensors * MIX[kind])
    lon = 121.929 + rng.uniform(-0.025, 0.025, sensors)
    lat = 30.899 + rng.uniform(-0.022, 0.022, sensors)
    kinds = np.repeat(list(MIX), [int(sensors * f) for f in MIX.values()])[:sensors]
    t0 = time.perf_counter()
    with conn.cursor() as cur, cur.copy(
            "COPY citypulse.sensors (sensor_id, kind, lon, lat) FROM STDIN") as cp:
        for i, k in enumerate(kinds):
            cp.write_row((f"b{i:06d}", k, float(lon[i]), float(lat[i])))
    conn.execute("INSERT INTO citypulse.sensor_placement (sensor, placement, status, zone_id) "
                 "SELECT id, 'point', 'placed', 'z' || (id % 60) FROM citypulse.sensors "
                 "ON CONFLICT DO NOTHING")
    ids = [r[0] for r in conn.execute("SELECT id FROM citypulse.sensors WHERE kind = %s "
                                      "ORDER BY id", (kind,))]
    k = KINDS[kind]
    step = timedelta(seconds=k.interval_s)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=hours)
    written, t = 0, start
    t1 = time.perf_counter()
    while t < end:
        vals = rng.uniform(0, 50, (len(ids), len(k.metrics)))
        rows = [(t, sid, None, *map(float, v), *([None] * (MAX_SLOTS - len(v))))
                for sid, v in zip(ids, vals, strict=True)]
        for i in range(0, len(rows), 50_000):
            written += store.write_rows(conn, rows[i:i + 50_000]).inserted
        t += step
    return {"sensors": sensors, "kind": kind, "kind_sensors": n_kind, "readings": written,
            "from": start, "to": end, "register_s": round(t1 - t0, 2),
            "write_s": round(time.perf_counter() - t1, 1)}


def _export(conn, settings: Settings, scenario_text: str, kind: str, fmt: str,
            info: dict, tmp: Path) -> dict:
    from sharing.exporter import ShareRequest, share
    from sharing.policy import load_policy

    folder = tmp / f"sc-{abs(hash(scenario_text)) % 10**8}"
    folder.mkdir(exist_ok=True)
    metric = KINDS[kind].metrics[0].name
    (folder / "bench.yaml").write_text(scenario_text.replace("KIND", kind)
                                       .replace("METRIC", metric))
    s = settings.model_copy(update={"share_scenarios_dir": folder})
    policy = load_policy(s)
    t0 = time.perf_counter()
    d = share(conn, s, policy, ShareRequest("bench", f"readings.{kind}", fmt, "bench",
                                            info["from"], info["to"]), tmp / f"out.{fmt}")
    dt = time.perf_counter() - t0
    return {"format": fmt, "rows_out": d.rows, "bytes": d.byte_count, "seconds": round(dt, 2),
            "input_rows_per_s": round(info["readings"] / dt),
            "output_rows_per_s": round(d.rows / dt)}


def _with_db(database_url: str | None, fn):
    import psycopg

    if database_url:
        with psycopg.connect(database_url, autocommit=True) as conn:
            return fn(conn, Settings(database_url=database_url))
    from citypulse.stack import PrivatePostgres

    with tempfile.TemporaryDirectory() as d, PrivatePostgres(Path(d) / "pg") as pg, \
            psycopg.connect(pg.url, autocommit=True) as conn:
        return fn(conn, Settings(database_url=pg.url, data_dir=Path(d) / "data"))


def register(bench_app: typer.Typer) -> None:
    """Add ``bench share`` and ``bench share-verify``."""

    @bench_app.command("share")
    def bench_share(sensors: int = typer.Option(200_000), kind: str = typer.Option("air"),
                    hours: float = typer.Option(24.0), seed: int = typer.Option(1),
                    database_url: str = typer.Option(None)) -> None:
        """Export rows/s for one day of one kind (aggregated and raw-but-allowed), JSON."""
        if kind not in MIX:
            raise typer.BadParameter(f"kind: one of {', '.join(MIX)}")

        def run(conn, settings):
            info = _setup(conn, settings, sensors, kind, hours, seed)
            with tempfile.TemporaryDirectory() as d:
                tmp = Path(d)
                runs = {f"aggregated_{f}": _export(conn, settings, BENCH_SCENARIO, kind, f,
                                                   info, tmp) for f in ("parquet", "csv")}
                runs |= {f"raw_{f}": _export(conn, settings, RAW_SCENARIO, kind, f, info, tmp)
                         for f in ("parquet", "csv")}
            return {**info, "from": info["from"].isoformat(), "to": info["to"].isoformat(),
                    "exports": runs}

        print(json.dumps(_with_db(database_url, run)))

    @bench_app.command("share-verify")
    def bench_verify(entries: int = typer.Option(100_000),
                     database_url: str = typer.Option(None)) -> None:
        """Seconds to verify a chain of ``entries`` evidence entries, JSON."""
        from citypulse import schema
        from sharing import evidence

        def run(conn, settings):
            schema.migrate(conn, settings)
            t0 = time.perf_counter()
            for i in range(0, entries, 10_000):
                recs = [evidence.new_record(
                    request_id=f"bench-{j}", channel="bench", recipient="bench",
                    scenario="bench", dataset="readings.air", policy_hash="0" * 64,
                    fields_delivered=["time", "zone_id", "pm25_ugm3"],
                    fields_withheld=[{"field": "sensor_id", "outcome": "forbidden",
                                      "reason": "unlisted"}],
                    transforms={"*": ["aggregate"]}, time_from=None, time_to=None,
                    format="csv", row_count=j, byte_count=j * 40, sha256="ab" * 32,
                    destination="domestic", approval_ref=None, outcome="delivered")
                    for j in range(i, min(entries, i + 10_000))]
                evidence.append_many(conn, settings, recs, sign_every=1000)
            t1 = time.perf_counter()
            report = evidence.verify(conn, settings)
            t2 = time.perf_counter()
            return {"entries": report["entries"], "ok": report["ok"],
                    "heads_checked": report["heads_checked"],
                    "append_s": round(t1 - t0, 2), "verify_s": round(t2 - t1, 2),
                    "verify_entries_per_s": round(report["entries"] / (t2 - t1))}

        print(json.dumps(_with_db(database_url, run)))
