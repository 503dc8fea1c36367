"""Simulator commands: ``citypulse sim deploy|run|replay|expected|check``."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import typer

from citypulse.settings import load_settings

sim_app = typer.Typer(no_args_is_help=True, help="Device simulator: deploy, run, replay.")

DEMO_SCENARIO = "city_day"


def _rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


@sim_app.command("deploy")
def sim_deploy(
    sensors: int = typer.Option(20_000, help="Number of sensors."),
    seed: int = typer.Option(0, help="Same seed, same deployment."),
    out: Path = typer.Option(Path("deployment.parquet"), help="Output file (.parquet or .csv)."),
    city: str = typer.Option(None, help="dishui (default), active (the database's active "
                             "city), NAME[@VERSION] (stored) or a city file to import."),
) -> None:
    """Place SENSORS sensors of every kind on the city model and write the deployment."""
    from device_sim import deploy
    from device_sim.city import city_from_spec, city_spec

    t = time.perf_counter()
    model = city_from_spec(city)
    df = deploy.deploy(sensors, seed, model)
    if city:
        import polars as pl

        df = df.with_columns(pl.lit(city_spec(model, city)).alias("city"))
    gen = time.perf_counter() - t
    deploy.write(df, out)
    kinds = dict(df.group_by("kind").len().sort("kind").iter_rows())
    print(json.dumps({
        "file": str(out), "sensors": df.height, "seed": seed, "seconds": round(gen, 2),
        "max_rss_mb": _rss_mb(), "frame_mb": round(df.estimated_size() / 1e6, 1),
        "kinds": kinds, "gateways": df["gateway_id"].n_unique() - 1,
        "direct": df["gateway_id"].null_count(), "zones": df["zone_id"].n_unique()}))


def _ensure_demo_deployment(settings) -> Path:
    """Create the demo deployment (settings.demo_sensors) and load it into the registry."""
    from device_sim import deploy
    from device_sim.city import city_from_spec, city_spec

    n = settings.demo_sensors
    city = city_from_spec("active", settings.database_url)  # `citypulse up --city FILE`
    key = city_spec(city, None)
    suffix = "" if key == "dishui@0" else "-" + key.replace("@", "-v")
    path = Path(settings.data_dir) / f"demo-deployment-{n}{suffix}.parquet"
    if not path.exists():
        import polars as pl

        df = deploy.deploy(n, 0, city)
        if suffix:
            df = df.with_columns(pl.lit(key).alias("city"))
        deploy.write(df, path)
    for attempt in range(30):  # the registry may still be migrating
        r = subprocess.run([sys.executable, "-m", "citypulse", "registry", "load", str(path)],
                           capture_output=True, text=True, env=dict(os.environ))
        if r.returncode == 0:
            print(f"registry: {r.stdout.strip()}", flush=True)
            break
        print(f"registry load failed (attempt {attempt + 1}): {r.stderr.strip()[-300:]}",
              file=sys.stderr, flush=True)
        time.sleep(2)
    return path


@sim_app.command("run")
def sim_run(
    deployment: Path = typer.Option(None, help="Deployment file from `sim deploy`."),
    rate: float = typer.Option(None, help="Offered readings/s (sensors report faster)."),
    speedup: float = typer.Option(1.0, help="Simulated seconds per wall second."),
    duration: float = typer.Option(None, help="Wall seconds to run (default: until Ctrl-C)."),
    scenario: str = typer.Option(None, help="Scenario YAML (or a shipped name, e.g. accident)."),
    record: Path = typer.Option(None, help="Write every message sent to this Parquet file."),
    qos: int = typer.Option(0, min=0, max=1, help="MQTT QoS."),
    gateway: bool = typer.Option(True, "--gateway/--single",
                                 help="Gateway payloads, or one message per reading."),
    processes: int = typer.Option(0, help="Publishing processes (0: as the rate needs)."),
    seed: int = typer.Option(0, help="Seed of the readings."),
    start: str = typer.Option(None, help="Simulated start: ISO time with zone, or 'scenario' "
                                         "(the scenario file's start). Default: now."),
    faults: str = typer.Option("none", help="Device faults: none | default."),
    bad_rate: float = typer.Option(None, help="Share of malformed/out-of-range readings."),
    tick: float = typer.Option(0.25, help="Wall seconds between publishing rounds."),
    max_inflight: int = typer.Option(200, help="QoS 1 messages in flight per connection."),
    mqtt_url: str = typer.Option(None, help="mqtt:// URL (CITYPULSE_MQTT_URL)."),
    prefix: str = typer.Option(None, help="Topic prefix (CITYPULSE_TOPIC_PREFIX)."),
    demo: bool = typer.Option(False, help="Demo: create + register a deployment, incidents."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON only."),
    dialect: str = typer.Option("native", help="Speak as: native | thingsboard | chirpstack | "
                                               "ttn | http (collectors need CITYPULSE_SOURCES)."),
    http_url: str = typer.Option(None, help="--dialect http: the dashboards' base URL."),
    api_key: str = typer.Option(None, help="--dialect http: an API key with scope ingest:http."),
    actuators: Path = typer.Option(None, help="Actuators file (`sim actuators` writes it): "
                                              "their reported states change the readings."),
    encoding: str = typer.Option("json", help="Payloads: json | msgpack (MessagePack, announced "
                                 "by the MQTT 5 content type)."),
) -> None:
    """Publish the deployment's readings over MQTT; ends with offered vs achieved rates."""
    from dataclasses import replace

    from device_sim.behaviour import Faults
    from device_sim.dialects import DIALECTS

    if dialect not in DIALECTS:
        raise typer.BadParameter(f"--dialect: one of {', '.join(DIALECTS)}")
    if encoding not in ("json", "msgpack") or (encoding != "json" and dialect != "native"):
        raise typer.BadParameter("--encoding: json | msgpack (msgpack with --dialect native)")
    if dialect == "http" and not api_key:
        raise typer.BadParameter("--dialect http needs --api-key (scope ingest:http)")
    from device_sim.run import RunConfig, resolve_scenario, run

    settings = load_settings(mqtt_url=mqtt_url, topic_prefix=prefix)
    if demo:
        deployment = _ensure_demo_deployment(settings)
        scenario = scenario or DEMO_SCENARIO
        faults = "default"
        if actuators is None:  # the demo's actuators (`sim actuators` with its defaults)
            from device_sim.actuators_cli import ensure_actuators_file

            actuators = ensure_actuators_file(Path(settings.data_dir))
    if deployment is None:
        raise typer.BadParameter("give --deployment (or --demo)")
    start_ts = None
    if start not in (None, "scenario"):
        try:
            when = datetime.fromisoformat(start)
        except ValueError:
            when = None
        if when is None or when.tzinfo is None:
            raise typer.BadParameter("--start: ISO time with a zone, e.g. "
                                     "2026-11-23T08:00:00+08:00, or 'scenario'")
        start_ts = when.timestamp()
    f = Faults.default() if faults == "default" else Faults()
    if bad_rate is not None:
        f = replace(f, bad=bad_rate)
    cfg = RunConfig(deployment=deployment, mqtt_url=settings.mqtt_url,
                    prefix=settings.topic_prefix, seed=seed, rate=rate, speedup=speedup,
                    duration=duration, start=start_ts, scenario_start=start == "scenario",
                    scenario=resolve_scenario(scenario), record=record, qos=qos,
                    gateway=gateway, processes=processes, tick=tick, faults=f,
                    max_inflight=max_inflight, ca_file=settings.mqtt_ca_file,
                    dialect=dialect, http_url=http_url, api_key=api_key, actuators=actuators,
                    encoding=encoding)
    summary = run(cfg, progress=None if as_json else _progress_printer(duration))
    print(json.dumps(summary.as_dict(), indent=None if as_json else 2))
    if summary.failed_workers:  # the summary is printed, but the run did not do its job
        typer.echo(f"sim run: publishing worker(s) failed: {', '.join(summary.failed_workers)} "
                   "(see the log above)", err=True)
        raise typer.Exit(1)


def _progress_printer(duration: float | None):
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        last = [0.0]

        def plain(p: dict) -> None:
            if p["elapsed"] - last[0] >= 10 or p.get("done"):
                last[0] = p["elapsed"]
                print(f"sim: {p['readings']:.0f} readings, {p['rate']:.0f}/s "
                      f"(offered {p['offered']:.0f}/s), errors {p['errors']:.0f}",
                      file=sys.stderr, flush=True)
        return plain
    progress = Progress(TextColumn("[bold]sim"), BarColumn(), TextColumn("{task.description}"),
                        TimeElapsedColumn(), console=console, transient=False)
    task = progress.add_task("", total=duration or None)
    progress.start()

    def update(p: dict) -> None:
        progress.update(task, completed=min(p["elapsed"], duration or p["elapsed"]),
                        description=f"{p['readings']:,.0f} readings  {p['rate']:,.0f}/s "
                                    f"(offered {p['offered']:,.0f}/s)  errors {p['errors']:.0f}")
        if p.get("done"):
            progress.update(task, total=p["elapsed"], completed=p["elapsed"])
            progress.stop()
    return update


@sim_app.command("replay")
def sim_replay(
    feed: Path = typer.Argument(..., exists=True, dir_okay=False, help="Recording (Parquet)."),
    speed: float = typer.Option(1.0, help="1: recorded timing; 10: ten times faster; 0: flat out."),
    qos: int = typer.Option(None, min=0, max=1, help="Override the recorded QoS."),
    prefix: str = typer.Option(None, help="Replace the recorded topic prefix."),
    mqtt_url: str = typer.Option(None, help="mqtt:// URL (CITYPULSE_MQTT_URL)."),
) -> None:
    """Re-send a recorded feed: same messages, same order, same (or faster) timing."""
    from rich.progress import Progress

    from device_sim.replay import replay

    settings = load_settings(mqtt_url=mqtt_url)
    with Progress(transient=True) as progress:
        task = progress.add_task("replay", total=None)

        def tick(i: int, n: int) -> None:
            progress.update(task, completed=i, total=n)
        result = replay(feed, settings.mqtt_url, speed, qos=qos, progress=tick, prefix=prefix,
                        ca_file=settings.mqtt_ca_file)
    print(json.dumps(result))


@sim_app.command("check")
def sim_check(scenario: str = typer.Argument(..., help="Scenario YAML or shipped name.")) -> None:
    """Validate a scenario file (errors name the line and field)."""
    from device_sim import scenario as sc
    from device_sim.run import resolve_scenario

    try:
        s = sc.load(resolve_scenario(scenario))
    except (sc.ScenarioError, FileNotFoundError) as exc:
        print(str(exc), file=sys.stderr)
        raise typer.Exit(2) from None
    print(json.dumps({"name": s.name, "incidents": [i.type for i in s.incidents]}))


@sim_app.command("expected")
def sim_expected(
    scenario: str = typer.Argument(..., help="Scenario YAML or shipped name."),
    deployment: Path = typer.Option(..., exists=True, help="Deployment file."),
    start: datetime = typer.Option(None, help="Simulated start (default: the scenario's)."),
    until: datetime = typer.Option(None, help="Repeating scenarios: list cycles until then."),
    seed: int = typer.Option(0),
) -> None:
    """Print the alerts the scenario should raise (ground truth for alert tests) as JSON."""
    from device_sim import deploy
    from device_sim import scenario as sc
    from device_sim.run import resolve_scenario

    dep = deploy.read(deployment)
    alerts = sc.expected_alerts(sc.load(resolve_scenario(scenario)), dep, start=start, seed=seed,
                                until=until)
    print(json.dumps([{**a.__dict__, "start": a.start.isoformat(), "end": a.end.isoformat()}
                      for a in alerts], indent=1))


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``sim`` commands; the demo service runs ``sim run --demo``."""
    from citypulse import commands

    app.add_typer(sim_app, name="sim")
    if not any(name == "sim" for name, _ in commands.UP_SERVICES):
        commands.UP_SERVICES.append(("sim", ["sim", "run", "--demo"]))
