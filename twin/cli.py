"""The twin's commands: ``citypulse twin export|place|run`` and ``citypulse bench twin``."""

from __future__ import annotations

from pathlib import Path

import typer

twin_app = typer.Typer(no_args_is_help=True, help="The geospatial twin of the Dishui Lake city.")


@twin_app.command("export")
def export_cmd(
    out: Path = typer.Option(..., "--out", help="File to write."),
    fmt: str = typer.Option("geojson", "--format", help="geojson|geoparquet"),
    seed: int = typer.Option(0, help="City model seed (0 = canonical)."),
) -> None:
    """Write the city model (lake, zones, road segments, nodes, gates) with a `layer` property."""
    from twin.citymodel import build_city, export

    if fmt not in ("geojson", "geoparquet"):
        raise typer.BadParameter("use geojson or geoparquet", param_hint="--format")
    n = export(build_city(seed), str(out), fmt)
    print(f"wrote {n} features to {out}")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``citypulse twin ...`` and ``citypulse bench twin``."""
    app.add_typer(twin_app, name="twin")
