"""``citypulse sources list|check|quarantine``: the source adapters and their mapping files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

sources_app = typer.Typer(no_args_is_help=True,
                          help="Source adapters: ThingsBoard gateways, ChirpStack, TTN, HTTP push.")


@sources_app.command("list")
def list_sources(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the registered source adapters, their topics, trust and mapping files."""
    from citypulse.settings import load_settings
    from ingest import sources
    from ingest.sources import mapping

    s = load_settings()
    unknown = sorted(set(s.sources) - {src.name for src in sources.available()})
    if unknown:
        print(f"citypulse sources list: CITYPULSE_SOURCES names unknown source(s) "
              f"{', '.join(unknown)}", file=sys.stderr)
        raise typer.Exit(2)
    rows = []
    for src in sources.available():
        try:
            m = mapping.load(src.name, s.sources_mapping_dir)
            mfile, fields = m.path, len(m.fields)
        except mapping.MappingError as exc:
            mfile, fields = f"ERROR {exc}", 0
        rows.append({"name": src.name, "enabled": src.name in s.sources, "trust": src.trust,
                     "transport": src.transport, "topics": src.subscriptions(),
                     "mapping": mfile, "mapped_fields": fields, "title": src.title})
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    for r in rows:
        on = "on " if r["enabled"] else "off"
        print(f"{r['name']:<12} {on} trust={r['trust']:<15} {r['title']}")
        print(f"{'':<16} mapping {r['mapping']} ({r['mapped_fields']} fields)")


@sources_app.command("check")
def check(file: Path = typer.Argument(..., exists=True, dir_okay=False,
                                      help="A mapping file named <source>.yaml")) -> None:
    """Validate a mapping file (errors name the line and the fix)."""
    from ingest.sources import mapping

    try:
        m = mapping.parse(file.read_text(), file.stem, str(file))
    except mapping.MappingError as exc:
        print(f"citypulse sources check: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    print(json.dumps({"file": str(file), "fields": len(m.fields), "devices": len(m.devices),
                      "passthrough": m.passthrough}))


@sources_app.command("quarantine")
def quarantine(database_url: str = typer.Option(None, help="postgresql:// URL")) -> None:
    """Devices a source named that the registry does not know (CITYPULSE_SOURCES_QUARANTINE)."""
    from citypulse import schema
    from citypulse.settings import load_settings

    with schema.connect(load_settings(database_url=database_url), autocommit=True) as conn:
        rows = conn.execute("SELECT source, device, first_seen, last_seen, messages FROM "
                            "citypulse.source_quarantine ORDER BY last_seen DESC").fetchall()
    print(json.dumps([{"source": s, "device": d, "first_seen": f.isoformat(),
                       "last_seen": la.isoformat(), "messages": n}
                      for s, d, f, la, n in rows], indent=2))


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``citypulse sources``."""
    app.add_typer(sources_app, name="sources")
