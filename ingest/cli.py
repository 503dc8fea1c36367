"""Ingest commands: ``citypulse ingest``, ``citypulse registry load``."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import typer

from citypulse.settings import load_settings

registry_app = typer.Typer(no_args_is_help=True, help="The sensor registry.")


@registry_app.command("load")
def registry_load(
    file: Path = typer.Argument(..., exists=True, dir_okay=False,
                                help="CSV (sensor_id,kind,lon,lat[,gateway_id]), Parquet or GeoJSON"),
    database_url: str = typer.Option(None, help="postgresql:// URL (CITYPULSE_DATABASE_URL)"),
) -> None:
    """Load sensors from FILE into citypulse.sensors (idempotent upsert), then place them.

    Placement on the active city (segment, zone, gate, direction, role, coverage) is stored
    at once; sensors that could not be placed are reported with the reason (also on /ingest).
    """
    from citypulse import schema
    from citypulse.city.placement import place_sensors
    from ingest import registry

    settings = load_settings(database_url=database_url)
    try:
        records = registry.read_file(file)
    except registry.RegistryError as exc:
        print(f"citypulse registry load: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    with schema.connect(settings, autocommit=True) as conn:
        schema.migrate(conn, settings)
        inserted, updated = registry.upsert(conn, records)
        placed = place_sensors(conn, tolerance_m=settings.twin_place_tolerance_m)
    print(json.dumps({"file": str(file), "sensors": len(records), "inserted": inserted,
                      "updated": updated, "unchanged": len(records) - inserted - updated,
                      "placed": placed.examined - len(placed.unplaceable),
                      "unplaceable": len(placed.unplaceable),
                      "unplaceable_sensors": [{"sensor_id": i, "kind": k, "reason": r}
                                              for i, k, r in placed.unplaceable[:100]]}))


def ingest(
    mqtt_url: str = typer.Option(None, help="mqtt://user:pass@host:port (CITYPULSE_MQTT_URL)"),
    database_url: str = typer.Option(None, help="postgresql:// URL (CITYPULSE_DATABASE_URL)"),
    share: str = typer.Option(None, help="MQTT 5 shared-subscription group: N collectors split the load."),
    metrics_port: int = typer.Option(None, help="Serve Prometheus /metrics on this port (0: any)."),
    client_id: str = typer.Option(None, help="MQTT client id (stable: the persistent session)."),
) -> None:
    """Run the MQTT collector until SIGTERM (then it flushes, acks and exits)."""
    from ingest.collector import run_collector

    settings = load_settings(mqtt_url=mqtt_url, database_url=database_url, share_group=share,
                             metrics_port=metrics_port, client_id=client_id)
    logging.getLogger().setLevel(logging.INFO)
    run_collector(settings)


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add the ingest commands and the collector service of `citypulse up`."""
    from citypulse.commands import UP_SERVICES

    app.add_typer(registry_app, name="registry")
    app.command("ingest")(ingest)
    if ("ingest", ["ingest"]) not in UP_SERVICES:
        UP_SERVICES.append(("ingest", ["ingest"]))
