"""Standard API commands: ``citypulse sta mqtt`` (the SensorThings MQTT relay)."""

from __future__ import annotations

import typer

from citypulse.settings import load_settings

sta_app = typer.Typer(no_args_is_help=True, help="OGC SensorThings API services.")


@sta_app.command("mqtt")
def sta_mqtt(
    mqtt_url: str = typer.Option(None, help="mqtt://user:pass@host:port (CITYPULSE_MQTT_URL)"),
) -> None:
    """Relay committed observations to v1.1/Datastreams(<id>)/Observations until SIGTERM.

    The collectors announce what they commit when CITYPULSE_STA_MQTT is true (see
    docs/standard-apis.md); `citypulse up` runs this relay then.
    """
    from standards.sta.mqtt import run_relay

    run_relay(load_settings(mqtt_url=mqtt_url))


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``citypulse sta`` and the relay to `citypulse up` (when CITYPULSE_STA_MQTT is on)."""
    from citypulse.commands import UP_SERVICES, UP_WHEN

    app.add_typer(sta_app, name="sta")
    if ("sta-mqtt", ["sta", "mqtt"]) not in UP_SERVICES:
        UP_SERVICES.append(("sta-mqtt", ["sta", "mqtt"]))
    UP_WHEN["sta-mqtt"] = "sta_mqtt"
