"""The twin's commands: ``citypulse twin export|place|run|state``."""

from __future__ import annotations

import json
import logging
import signal
import time
from pathlib import Path

import typer

log = logging.getLogger("twin")

twin_app = typer.Typer(no_args_is_help=True, help="The geospatial twin of the Dishui Lake city.")


@twin_app.command("export")
def export_cmd(
    out: Path = typer.Option(..., "--out", help="File to write."),
    fmt: str = typer.Option("geojson", "--format", help="geojson|geoparquet"),
    seed: int = typer.Option(None, help="The generated city with this seed instead of the "
                             "active city (0 = canonical Dishui Lake)."),
    database_url: str = typer.Option(None, help="postgresql:// URL (CITYPULSE_DATABASE_URL)"),
) -> None:
    """Write the active city model (water, zones, road segments, nodes, gates).

    Each feature has a `layer` property; without a database, the generated Dishui Lake city.
    """
    from citypulse.city import build_city, export

    if fmt not in ("geojson", "geoparquet"):
        raise typer.BadParameter("use geojson or geoparquet", param_hint="--format")
    city = build_city(seed) if seed is not None else _active_or_generated(database_url)
    n = export(city, str(out), fmt)
    print(f"wrote {n} features to {out}")


def _active_or_generated(database_url: str | None):
    """The active city of the configured database, else (none reachable) the generated one."""
    import psycopg

    from citypulse import schema
    from citypulse.city import active, build_city
    from citypulse.settings import load_settings

    s = load_settings(database_url=database_url)
    try:
        with schema.connect(s, autocommit=True) as conn:
            return active(conn)
    except psycopg.Error as exc:
        log.warning("no database (%s): exporting the generated Dishui Lake city", exc)
        return build_city(0)


@twin_app.command("place")
def place_cmd(
    database_url: str = typer.Option(None, help="postgresql:// URL (CITYPULSE_DATABASE_URL)"),
    all_sensors: bool = typer.Option(False, "--all", help="Re-place every sensor."),
) -> None:
    """Place registered sensors on segments/zones; print a JSON report (unplaceable listed)."""
    from citypulse import schema
    from citypulse.settings import load_settings
    from twin.placement import place_sensors

    s = load_settings(database_url=database_url)
    with schema.connect(s, autocommit=True) as conn:
        rep = place_sensors(conn, tolerance_m=s.twin_place_tolerance_m, replace_all=all_sensors)
    print(json.dumps(rep.as_dict(), indent=2))


@twin_app.command("state")
def state_cmd(
    what: str = typer.Argument("segments", help="segments|zones|od"),
    at: str = typer.Option(None, help="ISO-8601 time (default now); for od, the hour."),
    database_url: str = typer.Option(None, help="postgresql:// URL (CITYPULSE_DATABASE_URL)"),
) -> None:
    """Print the twin's state (now or at a past time) as JSON."""
    from citypulse import schema
    from citypulse.settings import load_settings
    from twin import state
    from twin.api import parse_time

    fn = {"segments": state.segments_at, "zones": state.zones_at, "od": state.od}.get(what)
    if fn is None:
        raise typer.BadParameter("segments, zones or od", param_hint="WHAT")
    s = load_settings(database_url=database_url)
    with schema.connect(s, autocommit=True) as conn:
        print(json.dumps(fn(conn, parse_time(at)).as_dict(), indent=1, default=str))


@twin_app.command("run")
def run_cmd(
    database_url: str = typer.Option(None, help="postgresql:// URL (CITYPULSE_DATABASE_URL)"),
    interval: float = typer.Option(None, help="Seconds between passes (CITYPULSE_TWIN_INTERVAL_S)."),
    once: bool = typer.Option(False, help="One pass, print it as JSON, exit."),
) -> None:
    """Keep the twin's aggregates current: place new sensors, aggregate, rebuild trips."""
    import psycopg

    from citypulse import schema
    from citypulse.settings import load_settings
    from twin.incremental import run_pass

    s = load_settings(database_url=database_url, twin_interval_s=interval)
    stop = {"now": False}

    def _stop(*_: object) -> None:
        stop["now"] = True

    if not once:
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    from citypulse.city import active as active_city
    from citypulse.city.store import model_key

    backoff = 1.0
    last_place = 0.0
    placed_on = ""
    while not stop["now"]:
        try:
            with schema.connect(s, autocommit=True) as conn:
                store = schema.Store(schema.current_backend(conn), s)
                log.info("twin worker connected (%s store)", store.backend)
                backoff = 1.0
                while not stop["now"]:
                    t = time.monotonic()
                    place = t - last_place > 30  # also: recompute the trailing window
                    city = active_city(conn)  # a switched city is picked up here
                    if model_key(city) != placed_on:
                        place, placed_on = True, model_key(city)
                    out = run_pass(conn, store, s, place=place, city=city, recompute=place)
                    if place:
                        last_place = t
                    if once:
                        print(json.dumps(out))
                        return
                    log.log(logging.INFO if place else logging.DEBUG,
                            "twin pass %.2fs lag %.1fs segments %d zones %d trips %d",
                            time.monotonic() - t, out["lag_s"], out["segment_rows"],
                            out["zone_rows"], out["trips"])
                    _sleep(s.twin_interval_s - (time.monotonic() - t), stop)
        except psycopg.Error as exc:  # database down or a failed pass: retry, never die
            if once:
                raise
            log.warning("twin pass failed (%s); retrying in %.0fs", exc, backoff)
            _sleep(backoff, stop)
            backoff = min(backoff * 2, 30.0)


def _sleep(seconds: float, stop: dict) -> None:
    end = time.monotonic() + max(0.0, seconds)
    while not stop["now"] and time.monotonic() < end:
        time.sleep(max(0.0, min(0.2, end - time.monotonic())))


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``citypulse twin ...`` and the worker to ``citypulse up``."""
    from citypulse.commands import UP_SERVICES

    app.add_typer(twin_app, name="twin")
    if ("twin", ["twin", "run"]) not in UP_SERVICES:
        UP_SERVICES.append(("twin", ["twin", "run"]))
