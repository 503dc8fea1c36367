"""``citypulse bench ingest --baseline``: citypulse next to a bare paho -> COPY pipeline.

In: a :class:`~bench.ingest.BenchSpec` and the payload shapes (readings per message).  Out:
a dict (printed as JSON) with, per shape, the citypulse run, the bare run
(:mod:`bench.bare`) over the same broker and database with the same prebuilt load, and their
ratios: stored/s (citypulse / bare) and CPU microseconds per reading per component
(generator, broker, collector, database).  Both runs of a shape happen in one invocation,
back to back, so the machine's other load hits both alike; compare ratios, not absolutes.
Each run starts as the first did: with private servers, on a new empty database of the same
PostgreSQL, the earlier run's database dropped and a checkpoint taken (no dirty pages of it
left to write out), and a restarted broker with nothing persisted (without that, a later run
wrote into the earlier runs' indexes, met a broker heap grown by their backlog and wrote out
their dirty buffers, and lost 10-30% by its place in the order alone).
"""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import uuid
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

from bench.bare import create_table
from bench.ingest import BenchSpec, CpuMeter, db_port, run_bench, send, services, wait_stored
from bench.proccpu import stop
from citypulse.settings import Settings


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def run_bare(spec: BenchSpec, db_url: str, mqtt_url: str, tmpd: Path) -> dict:
    """One run of the bare pipeline with the same load as :func:`bench.ingest.run_bench`."""
    prefix = "bare" + uuid.uuid4().hex[:6]
    table = f"{prefix}_raw"
    ids = [f"{prefix}-s{i:06d}" for i in range(spec.sensors)]
    ep = Settings(database_url=db_url, mqtt_url=mqtt_url).mqtt
    with psycopg.connect(db_url, autocommit=True) as conn:
        create_table(conn, table)
    stats = tmpd / f"{prefix}.stats.json"
    cfg = tmpd / f"{prefix}.json"
    cfg.write_text(json.dumps({
        "host": ep.host, "port": ep.port, "prefix": prefix, "sensor_ids": ids,
        "encoding": spec.encoding, "database_url": db_url, "table": table,
        "stats": str(stats), "client_id": prefix + "-sub"}))
    p = subprocess.Popen([sys.executable, "-m", "bench.bare", str(cfg)],
                         stdout=subprocess.PIPE, text=True)

    def stored() -> int:
        with contextlib.suppress(OSError, ValueError):
            return json.loads(stats.read_text())["stored"]
        return 0

    try:
        if p.stdout.readline().strip() != "ready":
            raise RuntimeError("bare subscriber did not start")
        meter = CpuMeter(ep.port, db_port(db_url), {"collector": [p.pid]})
        load = send(spec, ep.host, ep.port, prefix, ids, tmpd, meter.start)
        t0 = meter.started
        n, t_done = wait_stored(stored, load.readings)
        cpu = meter.stop(load, n)
    finally:
        stop([p], 60)
    final = json.loads(stats.read_text())
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows, distinct = conn.execute(sql.SQL(
            "SELECT count(*), count(DISTINCT (sensor, seq)) FROM {}").format(
            sql.Identifier(table))).fetchone()
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))
    lags = final.get("lags", [])
    p50, p99 = _pct(lags, 0.5), _pct(lags, 0.99)
    return {
        "pipeline": "bare", "per_message": spec.per_message, "encoding": spec.encoding,
        "sent": load.readings, "messages": load.messages,
        "offered_per_s": round(load.readings / max(1e-6, load.seconds), 1),
        "stored": rows, "stored_per_s": round(rows / max(1e-6, t_done - t0), 1),
        "p50_latency_ms": None if p50 is None else round(p50 * 1000, 1),
        "p99_latency_ms": None if p99 is None else round(p99 * 1000, 1),
        "lost": load.readings - distinct, "duplicates": rows - distinct,
        "decode_errors": final.get("errors", 0), "cpu_us_per_reading": cpu,
    }


def ratios(ours: dict, bare: dict) -> dict:
    """Ratios citypulse / bare: stored/s and CPU per reading per component."""
    def div(a, b):
        return None if a is None or not b else round(a / b, 2)

    out = {"stored_per_s": div(ours["stored_per_s"], bare["stored_per_s"])}
    for k, v in ours["cpu_us_per_reading"].items():
        out[f"cpu_{k}"] = div(v, bare["cpu_us_per_reading"].get(k))
    return out


def _on(db_url: str, result: dict, others: dict[str, int]) -> dict:
    """``result`` with its run's database and the earlier runs' databases left at its start.

    ``others``: database name -> that count, as ``fresh`` found it.
    """
    result["database"] = name = urlsplit(db_url).path[1:]
    result["earlier_databases"] = others.get(name)
    with psycopg.connect(db_url, autocommit=True) as conn:  # background work during the run
        result["autovacuum"], result["autovacuum_runs"] = conn.execute(
            "SELECT current_setting('autovacuum'), coalesce(sum(autovacuum_count "
            "+ autoanalyze_count), 0)::int FROM pg_stat_all_tables").fetchone()
    return result


def _median(ratios_: list[dict]) -> dict:
    """Per key, the median of the rounds' ratios (None where a round had none)."""
    out = {}
    for key in ratios_[0]:
        vals = [r[key] for r in ratios_ if r.get(key) is not None]
        out[key] = round(statistics.median(vals), 2) if vals else None
    return out


def run_compare(spec: BenchSpec, shapes: list[int], baseline: bool = True,
                progress=None, before: str | None = None, rounds: int = 1) -> dict:
    """Per shape: citypulse, then (with ``baseline``) the bare pipeline; see module docstring.

    ``before``: a source tree of an earlier citypulse (e.g. ``git archive REV``); its
    collector runs first on the same load, as ``before`` (with its own ratios).  ``rounds``
    > 1: the runs are repeated, every other round in reverse order, and each shape also
    gets ``rounds`` (every round) and ``median`` (the median ratios).
    """
    say = progress or (lambda _m: None)
    with tempfile.TemporaryDirectory(prefix="cp-bench-") as tmp, contextlib.ExitStack() as stack:
        tmpd = Path(tmp)
        server_url, mqtt_url, broker = services(spec, tmpd, stack, say)
        fresh_count = iter(range(1, 1 << 30))
        made: list[str] = []
        others: dict[str, int] = {}  # database -> earlier runs' databases left at its start

        def fresh() -> str:
            """A new empty database for the next run; the last one dropped, nothing dirty left.

            The broker is restarted too, if ours.
            """
            if broker is not None:
                broker.stop()
                for f in broker.data_dir.glob("*.db"):
                    f.unlink()
                broker.start()
            if spec.database_url is not None:  # not ours: the one database it names
                return server_url
            name = f"cpbench{next(fresh_count)}"
            with psycopg.connect(server_url, autocommit=True) as conn:
                while made:
                    conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(
                        sql.Identifier(made.pop())))
                conn.execute("CHECKPOINT")
                others[name] = conn.execute("SELECT count(*) FROM pg_database "
                                            "WHERE datname LIKE 'cpbench%'").fetchone()[0]
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            made.append(name)
            return urlsplit(server_url)._replace(path="/" + name).geturl()

        def one(s: BenchSpec, name: str) -> dict:
            say(f"{s.per_message} readings/message: {name}")
            db_url = fresh()
            if name == "bare":
                return _on(db_url, run_bare(replace(s, database_url=db_url), db_url, mqtt_url,
                                            tmpd), others)
            path = before if name == "before" else s.collector_path
            return _on(db_url, run_bench(replace(s, collector_path=path, database_url=db_url),
                                         progress=say), others)

        names = ["before"] * bool(before) + ["citypulse"] + ["bare"] * bool(baseline)
        runs = []
        for k in shapes:
            s = replace(spec, per_message=k, mqtt_url=mqtt_url)
            done = []
            for r in range(rounds):  # every other round in reverse: no pipeline keeps a place
                order = names if r % 2 == 0 else names[::-1]
                got = {name: one(s, name) for name in order}
                entry = {"order": order, **{n: got[n] for n in names}}
                if baseline:
                    entry["ratio"] = ratios(got["citypulse"], got["bare"])
                    if before:
                        entry["ratio_before"] = ratios(got["before"], got["bare"])
                done.append(entry)
            entry = {"per_message": k, **done[0]}
            if rounds > 1:
                entry["rounds"] = done
                entry["median"] = {key: _median([d[key] for d in done])
                                   for key in ("ratio", "ratio_before") if key in done[0]}
            runs.append(entry)
        return {"encoding": spec.encoding, "feeder": spec.feeder, "rate": spec.rate,
                "duration_s": spec.duration, "collectors": spec.collectors,
                "writer_connections": spec.writer_connections, "rounds": rounds, "runs": runs}
