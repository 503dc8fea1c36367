"""``citypulse sim actuators``: deploy actuators on the city, register them, run them.

Deployment (:func:`deploy_actuators`): per zone ``pumps_per_zone`` drainage pumps and one
siren at random points inside it, a variable message sign on every ``sign_every``-th road
segment (its midpoint) and a signal controller at the end of every ``signal_every``-th;
``zone_id``/``segment_id`` go to the registry's props, the twin places them from their
positions.  Same seed, same frame.  With ``citypulse up --demo`` this runs as ``sim-actuators``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import shapely
import typer

from citypulse.settings import load_settings

PREFIX = {"pump": "pmp", "sign": "vms", "signal": "sig", "siren": "srn"}


def deploy_actuators(city: Any = None, seed: int = 0, pumps_per_zone: int = 2,
                     sign_every: int = 12, signal_every: int = 12) -> pl.DataFrame:
    """Actuators on the city model: ``device_id, kind, lon, lat, zone_id, segment_id``."""
    from device_sim.city import load_city
    from device_sim.deploy import sample_in_polygons

    city = load_city(0) if city is None else city
    rng = np.random.default_rng(seed)
    zones = city.zones
    polys = np.asarray(zones.geometry.values)
    zids = zones["zone_id"].to_numpy().astype(str)
    rows: list[dict] = []
    for kind, per in (("pump", pumps_per_zone), ("siren", 1)):
        which = np.repeat(np.arange(len(zids)), per)
        lon, lat = sample_in_polygons(rng, polys, which)
        for i, z in enumerate(which):
            rows.append({"kind": kind, "lon": lon[i], "lat": lat[i], "zone_id": zids[z],
                         "segment_id": None})
    segs = city.segments
    lines = np.asarray(segs.geometry.values)
    sids = segs["segment_id"].to_numpy().astype(str)
    for kind, every, frac in (("sign", sign_every, 0.5), ("signal", signal_every, 0.98)):
        idx = np.arange(0, len(sids), every)
        pts = shapely.line_interpolate_point(lines[idx], frac, normalized=True)
        zone_of = city.zones_of(shapely.get_x(pts), shapely.get_y(pts))
        for j, i in enumerate(idx):
            rows.append({"kind": kind, "lon": shapely.get_x(pts[j]), "lat": shapely.get_y(pts[j]),
                         "zone_id": zone_of[j], "segment_id": sids[i]})
    counts: dict[str, int] = {}
    for r in rows:
        n = counts.get(r["kind"], 0)
        counts[r["kind"]] = n + 1
        r["device_id"] = f"{PREFIX[r['kind']]}-{n:06d}"
    return pl.DataFrame(rows, infer_schema_length=None).select("device_id", "kind", "lon", "lat", "zone_id", "segment_id")


def write_registry_csv(frame: pl.DataFrame, path: Path) -> Path:
    """The deployment as a registry file (``citypulse registry load`` reads it).

    Written whole or not at all (a temporary file renamed), so that ``sim run`` reading it
    at the same time sees one or the other.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    frame.rename({"device_id": "sensor_id"}).with_columns(
        pl.lit("").alias("gateway_id")).write_csv(tmp)
    tmp.replace(path)
    return path


def ensure_actuators_file(data_dir: Path, seed: int = 0, pumps_per_zone: int = 2) -> Path:
    """``data_dir/actuators.csv`` (the registry file of the default deployment), made if absent."""
    path = data_dir / "actuators.csv"
    if not path.exists():
        write_registry_csv(deploy_actuators(seed=seed, pumps_per_zone=pumps_per_zone), path)
    return path


def parse_drops(items: list[str]) -> dict[str, float]:
    """``["pmp-000001=0.5", ...]`` -> ``{"pmp-000001": 0.5}``; a bad item says how to write it."""
    out: dict[str, float] = {}
    for item in items:
        dev, _, share = item.partition("=")
        try:
            value = float(share)
        except ValueError:
            value = -1.0
        if not dev or not 0 <= value <= 1:
            raise typer.BadParameter(f"--drop {item!r}: write DEVICE=SHARE, a share in 0..1, "
                                     "e.g. --drop pmp-000001=0.5")
        out[dev] = value
    return out


def actuators(
    pumps_per_zone: int = typer.Option(2, help="drainage pumps per zone"),
    seed: int = typer.Option(0),
    register: bool = typer.Option(True, help="load them into the registry first"),
    drop_share: float = typer.Option(0.0, help="fault profile: share of commands lost"),
    drop: list[str] = typer.Option([], help="fault profile of one device: DEVICE=SHARE of "
                                            "its commands lost (repeatable)"),
    delay_min: float = typer.Option(0.3), delay_max: float = typer.Option(1.2),
    city: str = typer.Option("active", help="active (the database's active city, as "
                             "`citypulse up --city FILE` sets it), dishui, NAME[@VERSION] "
                             "or a city file."),
) -> None:
    """Run simulated actuators (pumps, signs, signals, sirens) that obey commands."""
    from device_sim.actuators import ActuatorSim
    from device_sim.city import city_from_spec

    drops = parse_drops(drop)
    settings = load_settings()
    model = city_from_spec(city, settings.database_url)
    frame = deploy_actuators(model, seed=seed, pumps_per_zone=pumps_per_zone)
    if register:
        path = write_registry_csv(frame, Path(settings.data_dir) / "actuators.csv")
        for _ in range(30):  # the registry may still be migrating
            r = subprocess.run([sys.executable, "-m", "citypulse", "registry", "load",
                                str(path)], capture_output=True, text=True, env=dict(os.environ))
            if r.returncode == 0:
                break
            time.sleep(2)
    sim = ActuatorSim(settings.mqtt_url, settings.topic_prefix, frame.to_dicts(),
                      client_id=f"sim-actuators-{settings.topic_prefix}",
                      delay_s=(delay_min, delay_max), drop_share=drop_share, drops=drops, seed=seed,
                      ca_file=settings.mqtt_ca_file)
    print(json.dumps({"actuators": frame.height,
                      "by_kind": dict(frame.group_by("kind").len().iter_rows())}), flush=True)
    stop = threading.Event()
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    sim.close()


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``sim actuators``; ``citypulse up --demo`` runs it."""
    from citypulse.commands import UP_SERVICES
    from device_sim.cli import sim_app

    sim_app.command("actuators")(actuators)
    if not any(name == "sim-actuators" for name, _ in UP_SERVICES):
        UP_SERVICES.append(("sim-actuators", ["sim", "actuators"]))
