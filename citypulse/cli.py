"""The ``citypulse`` command line.

Each pipeline stage contributes its own commands from its ``cli`` module (a ``typer.Typer``
called ``app`` or a ``register(root)`` function); this module only assembles them, so
stages never edit each other's command files.  ``citypulse --help`` lists everything.
"""

from __future__ import annotations

import importlib
import logging
import sys

import typer

from citypulse.settings import ConfigError

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="citypulse: IoT sensing and digital twin for the Dishui Lake city.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks (print JSON).")
app.add_typer(bench_app, name="bench")

# modules that add commands: each has register(app, bench_app)
_COMMAND_MODULES = (
    "citypulse.commands",
    "ingest.cli",
    "ingest.credentials_cli",
    "device_sim.cli",
    "twin.cli",
    "analytics.cli",
    "dashboards.cli",
    "control.cli",
    "device_sim.actuators_cli",
)


def _register() -> None:
    for name in _COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency, not a stage not built yet
                raise
            continue
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
