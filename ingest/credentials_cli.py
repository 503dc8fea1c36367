"""Commands of the production/trust work: ``citypulse devices ...`` and ``citypulse bench soak``.

``citypulse devices credentials --deployment F --out DIR [--tls-dir D]`` writes the broker's
password file and ACL (see :mod:`ingest.credentials`); ``citypulse devices tls --out D``
makes a private CA and server certificate for the TLS listener.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import typer

devices_app = typer.Typer(no_args_is_help=True,
                          help="Device identities: broker passwords, ACL, TLS certificates.")


@devices_app.command("credentials")
def credentials(
    deployment: Path = typer.Option(..., help="Deployment Parquet/CSV (sensor_id, gateway_id, ...)."),
    out: Path = typer.Option(..., help="Directory for passwd, acl, credentials.csv, services.env."),
    tls_dir: Path = typer.Option(None, help="Directory with ca.crt, server.crt, server.key: "
                                            "adds a TLS listener on 8883."),
    mount_dir: str = typer.Option("/mosquitto/auth", help="Where the broker sees --out."),
    topic_prefix: str = typer.Option(None, help="Topic prefix (CITYPULSE_TOPIC_PREFIX)."),
    source_account: list[str] = typer.Option(
        [], help="A foreign source's broker account, source:username[=scope]: "
                 "thingsboard:gw-north, chirpstack:cs-ns=<application id>, "
                 "ttn:tts=<app>@<tenant> (repeatable)."),
) -> None:
    """Write the Mosquitto password file and ACL for every sensor and gateway of a deployment."""
    from citypulse.settings import load_settings
    from ingest.credentials import CredentialsError, SourceAccount, write_credentials

    settings = load_settings(topic_prefix=topic_prefix)
    try:
        accounts = [SourceAccount.parse(a) for a in source_account]
        summary = write_credentials(deployment, out, prefix=settings.topic_prefix,
                                    tls_dir=tls_dir, mount_dir=mount_dir, accounts=accounts)
    except CredentialsError as exc:
        typer.echo(f"citypulse devices credentials: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(dataclasses.asdict(summary)))


@devices_app.command("tls")
def tls(
    out: Path = typer.Option(..., help="Directory for ca.crt, server.crt, server.key."),
    host: list[str] = typer.Option(["mqtt", "localhost", "127.0.0.1"],
                                   help="Names and addresses the broker is reached at."),
) -> None:
    """Make a private CA and a server certificate for the broker's TLS listener (openssl)."""
    from ingest.credentials import CredentialsError, make_self_signed

    try:
        paths = make_self_signed(out, host)
    except CredentialsError as exc:
        typer.echo(f"citypulse devices tls: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps({k: str(v) for k, v in paths.items()}))


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``citypulse devices``."""
    app.add_typer(devices_app, name="devices")
