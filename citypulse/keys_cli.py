"""Commands: ``citypulse keys create|list|revoke`` (API keys, see :mod:`citypulse.apikeys`).

``keys create NAME --scope S [--scope S2] [--expires-in-days N]`` prints the secret once
(stdout, nothing else there); ``keys list [--json]`` never shows hashes or secrets;
``keys revoke NAME``.  Run by an operator with a database role that may write api_keys
(the migrator); who created a key is recorded (``--by``, default the OS user).
"""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime, timedelta

import typer

keys_app = typer.Typer(no_args_is_help=True,
                       help="API keys for machine clients (ingest, sharing, read APIs).")


def _conn(database_url: str | None):
    from citypulse import schema
    from citypulse.settings import load_settings

    return schema.connect(load_settings(database_url=database_url), autocommit=True)


@keys_app.command("create")
def create(
    name: str = typer.Argument(..., help="Unique name, e.g. the client it is for."),
    scope: list[str] = typer.Option(..., "--scope", help="ingest:<source>, share:<scenario>, "
                                    "sta:read, ngsi:read, api:read; area:* for all."),
    expires_in_days: float = typer.Option(None, help="Key stops working after this."),
    by: str = typer.Option(None, help="Recorded as created_by (default: the OS user)."),
    database_url: str = typer.Option(None, help="postgresql:// URL (CITYPULSE_DATABASE_URL)"),
) -> None:
    """Create a key and print its secret once (only a hash is stored)."""
    from citypulse import apikeys

    expires = (datetime.now(UTC) + timedelta(days=expires_in_days)
               if expires_in_days is not None else None)
    try:
        with _conn(database_url) as conn:
            info, secret = apikeys.create(conn, name, scope, by or getpass.getuser(), expires)
    except ValueError as exc:
        typer.echo(f"citypulse keys create: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"created key {info.name} (prefix {info.prefix}, scopes "
               f"{', '.join(info.scopes)}); the secret is shown only now:", err=True)
    typer.echo(secret)


@keys_app.command("list")
def list_(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    database_url: str = typer.Option(None, help="postgresql:// URL (CITYPULSE_DATABASE_URL)"),
) -> None:
    """List keys: name, prefix, scopes, created, expires, revoked, last used."""
    from citypulse import apikeys

    with _conn(database_url) as conn:
        rows = apikeys.list_keys(conn)
    if as_json:
        typer.echo(json.dumps(rows, default=str))
        return
    for r in rows:
        state = "revoked" if r["revoked_at"] else (
            "expired" if r["expires_at"] and r["expires_at"] < datetime.now(UTC) else "live")
        typer.echo(f"{r['name']:<24} cpk_{r['prefix']}_...  {state:<8} "
                   f"{','.join(r['scopes']):<30} last used {r['last_used_at'] or 'never'}")


@keys_app.command("revoke")
def revoke(
    name: str = typer.Argument(...),
    database_url: str = typer.Option(None, help="postgresql:// URL (CITYPULSE_DATABASE_URL)"),
) -> None:
    """Revoke a key at once (it is kept, marked revoked, for the record)."""
    from citypulse import apikeys

    with _conn(database_url) as conn:
        if not apikeys.revoke(conn, name):
            typer.echo(f"citypulse keys revoke: no live key named {name!r}", err=True)
            raise typer.Exit(1)
    typer.echo(f"revoked {name}")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``citypulse keys``."""
    app.add_typer(keys_app, name="keys")
