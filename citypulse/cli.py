"""The ``citypulse`` command line.

Each pipeline stage contributes its own commands from its ``cli`` module, a module with
``register(app, bench_app)``; this module only assembles them, so stages never edit each
other's command files.  The modules are imported here by name, so a stage that fails to
import fails ``citypulse`` loudly.  ``citypulse --help`` lists everything.  This is the one
module of ``citypulse/`` that imports the stages: it is the program's entry, not a foundation.
"""

from __future__ import annotations

import logging
import sys

import typer

import analytics.cli
import bench.cli
import citypulse.city.cli
import citypulse.commands
import citypulse.keys_cli
import control.cli
import dashboards.cli
import device_sim.actuators_cli
import device_sim.cli
import ingest.cli
import ingest.credentials_cli
import ingest.sources.cli
import sharing.cli
import standards.cli
import twin.cli
from citypulse.settings import ConfigError

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="citypulse: IoT sensing and digital twin for the Dishui Lake city.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks (print JSON).")
app.add_typer(bench_app, name="bench")

# modules that add commands, in the order of `citypulse up`'s services: register(app, bench_app)
_COMMAND_MODULES = (
    citypulse.commands,
    citypulse.city.cli,
    citypulse.keys_cli,
    ingest.cli,
    ingest.credentials_cli,
    ingest.sources.cli,
    device_sim.cli,
    twin.cli,
    analytics.cli,
    dashboards.cli,
    standards.cli,
    control.cli,
    device_sim.actuators_cli,
    sharing.cli,
    bench.cli,
)


def _register() -> None:
    for mod in _COMMAND_MODULES:
        mod.register(app, bench_app)


_register()


def main() -> None:
    """Entry point of the console script."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app()
    except ConfigError as exc:
        print(f"citypulse: {exc}", file=sys.stderr)
        sys.exit(2)
