"""City commands: ``citypulse city import|list|use|show``."""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import typer

city_app = typer.Typer(no_args_is_help=True, help="City models: import a real city, switch.")


def _connect(database_url: str | None):
    from citypulse import schema
    from citypulse.settings import load_settings

    return schema.connect(load_settings(database_url=database_url), autocommit=True)


def _layers(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items or []:
        role, sep, name = item.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"{item!r}: use ROLE=LAYER, e.g. roads=streets",
                                     param_hint="--layer")
        out[role.strip()] = name.strip()
    return out


def read_city(file: Path, name: str | None = None, layer: list[str] | None = None,
              mapping: Path | None = None, grid_m: float | None = None):
    """Import FILE; on bad input print the error (file, layer, feature) and exit 2."""
    from citypulse.city.importer import CityImportError, import_city

    try:
        return import_city(file, name=name, layers=_layers(layer or []), mapping=mapping,
                           grid_m=grid_m)
    except CityImportError as exc:
        print(f"citypulse city import: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None


@city_app.command("import")
def import_cmd(
    file: Path = typer.Argument(..., help=".osm.pbf, .geojson, .gpkg or .parquet file."),
    layer: list[str] = typer.Option(None, "--layer", help="ROLE=LAYER (roads|zones|water)."),
    mapping: Path = typer.Option(None, help="mapping.yaml naming layers and fields."),
    name: str = typer.Option(None, help="Name of the city model (default: the file's)."),
    grid_m: float = typer.Option(None, help="Grid cell size for land no polygon covers."),
    use: bool = typer.Option(True, "--use/--no-use", help="Make it the active city."),
    database_url: str = typer.Option(None, help="postgresql:// URL (CITYPULSE_DATABASE_URL)"),
) -> None:
    """Import a city model into the database (a new version); print the import report."""
    from citypulse.city.store import save

    t = time.perf_counter()
    city, report = read_city(file, name, layer, mapping, grid_m)
    secs = time.perf_counter() - t
    with _connect(database_url) as conn:
        version = save(conn, city, source=file.name, report=report, activate=use)
    print(json.dumps({"name": city.name, "version": version, "active": use,
                      "seconds": round(secs, 2), "max_rss_mb": _rss_mb(), **report},
                     indent=1, default=str))


@city_app.command("list")
def list_cmd(database_url: str = typer.Option(None, help="postgresql:// URL")) -> None:
    """Every stored city model version; the active one marked."""
    from citypulse.city.store import list_models

    with _connect(database_url) as conn:
        print(json.dumps(list_models(conn), indent=1, default=str))


@city_app.command("use")
def use_cmd(name: str = typer.Argument(..., help="City name (dishui = the generated city)."),
            version: int = typer.Option(None, help="A version (default: the latest)."),
            database_url: str = typer.Option(None, help="postgresql:// URL")) -> None:
    """Make a stored city model active; every stage follows within its refresh."""
    from citypulse.city.store import CityError, use

    with _connect(database_url) as conn:
        try:
            n, v = use(conn, name, version)
        except CityError as exc:
            print(f"citypulse city use: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
    print(json.dumps({"active": n, "version": v}))


@city_app.command("show")
def show_cmd(database_url: str = typer.Option(None, help="postgresql:// URL")) -> None:
    """The active city model: counts, extent, zone types."""
    from citypulse.city.store import active

    with _connect(database_url) as conn:
        print(json.dumps(active(conn).summary(), indent=1))


def _rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``citypulse city ...`` (``citypulse bench city`` lives in the bench package)."""
    del bench_app
    app.add_typer(city_app, name="city")
