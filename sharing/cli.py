"""``citypulse share ...`` commands."""

from __future__ import annotations

import getpass
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import typer

from citypulse.settings import load_settings

share_app = typer.Typer(no_args_is_help=True, help="Governed data sharing (docs/sharing.md).")
_DB = typer.Option(None, "--database-url", help="postgresql:// URL (CITYPULSE_DATABASE_URL)")


def _conn(settings):
    import psycopg

    return psycopg.connect(settings.database_url, autocommit=True)


def _policy(settings):
    from sharing.policy import load_policy
    from sharing.yamlfile import PolicyError

    try:
        return load_policy(settings)
    except PolicyError as exc:
        print(f"citypulse: sharing policy: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None


def _when(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r}: use ISO 8601, e.g. 2026-11-30T08:00Z") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


@share_app.command("scenarios")
def scenarios_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON."),
                  database_url: str = _DB) -> None:
    """List the scenarios: recipients, destination, and what each field's outcome is."""
    from sharing.status import scenario_table

    settings = load_settings(database_url=database_url)
    policy = _policy(settings)
    with _conn(settings) as conn:
        table = scenario_table(conn, policy)
    if as_json:
        print(json.dumps({"policy_hash": policy.hash, "scenarios": table}, default=str))
        return
    print(f"policy {policy.hash[:16]}")
    for sc in table:
        print(f"\n{sc['name']}: {sc['title']} -> {sc['destination']}"
              f"{' (cross-border)' if sc['cross_border'] else ''}; recipients "
              f"{', '.join(sc['recipients'])}; approval {sc['approval_ref'] or '-'}")
        for d in sc["datasets"]:
            for f in d["fields"]:
                tr = f" via {', '.join(f['transforms'])}" if f["transforms"] else ""
                print(f"  {d['dataset']}.{f['field']:<22} {f['outcome']:<15} {f['grade']:<9}"
                      f"{tr}  {f['reason'] if f['outcome'] != 'allowed' else ''}")


@share_app.command("grades")
def grades_cmd(database_url: str = _DB) -> None:
    """Print the grade of every field of every shareable dataset (JSON)."""
    print(json.dumps(_policy(load_settings(database_url=database_url)).grades, indent=1))


@share_app.command("check")
def check_cmd(path: Path = typer.Argument(..., help="A scenario YAML file.")) -> None:
    """Validate one scenario file (errors name the line)."""
    from sharing.scenario import load_scenario
    from sharing.yamlfile import PolicyError

    try:
        sc = load_scenario(path)
    except PolicyError as exc:
        print(f"citypulse: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    print(json.dumps(sc.summary()))


@share_app.command("export")
def export_cmd(
    scenario: str = typer.Option(..., help="Scenario name (file name without .yaml)."),
    dataset: list[str] = typer.Option(None, help="Dataset(s); default: all of the scenario."),
    start: str = typer.Option(None, "--from", help="From (ISO 8601; default: to - 1 day)."),
    end: str = typer.Option(None, "--to", help="To, exclusive (ISO 8601; default: now)."),
    fmt: str = typer.Option("csv", "--format", help="parquet | csv | geojson"),
    out: Path = typer.Option(..., help="Output file (one dataset) or folder (several)."),
    recipient: str = typer.Option(None, help="Recipient (default: the scenario's only one)."),
    database_url: str = _DB,
) -> None:
    """Export through the policy; prints each delivery's evidence id, rows and SHA-256."""
    from sharing.exporter import ShareError, ShareRefused, ShareRequest, share

    settings = load_settings(database_url=database_url)
    policy = _policy(settings)
    if scenario not in policy.scenarios:
        print(f"citypulse: no scenario {scenario!r}; known: {', '.join(policy.scenarios)}",
              file=sys.stderr)
        raise typer.Exit(2)
    names = dataset or list(policy.scenarios[scenario].datasets)
    if len(names) > 1:
        out.mkdir(parents=True, exist_ok=True)
    status = 0
    with _conn(settings) as conn:
        for name in names:
            path = out / f"{name}.{fmt}" if len(names) > 1 else out
            req = ShareRequest(scenario, name, fmt, recipient, _when(start), _when(end),
                               channel=f"cli:{getpass.getuser()}")
            try:
                d = share(conn, settings, policy, req, path)
            except ShareError as exc:
                print(f"citypulse: {exc}", file=sys.stderr)
                raise typer.Exit(2) from None
            except ShareRefused as exc:
                print(json.dumps({"dataset": name, "refused": str(exc),
                                  "evidence_id": str(exc.evidence["evidence_id"])}))
                status = 3
                continue
            print(json.dumps({"dataset": name, "file": str(d.path), "rows": d.rows,
                              "bytes": d.byte_count, "sha256": d.sha256,
                              "evidence_id": str(d.evidence["evidence_id"]),
                              "delivered": d.decision.delivered,
                              "withheld": d.decision.withheld}))
    raise typer.Exit(status)


@share_app.command("approve")
def approve_cmd(
    scenario: str = typer.Option(..., help="Scenario the approval covers."),
    ref: str = typer.Option(..., help="Approval reference (assessment / filing number)."),
    route: str = typer.Option("security_assessment",
                              help="security_assessment | standard_contract | certification"),
    by: str = typer.Option(None, help="Who records it (default: the OS user)."),
    note: str = typer.Option("", help="Free text."),
    database_url: str = _DB,
) -> None:
    """Record an approval reference for a cross-border scenario (audited)."""
    from sharing import records

    settings = load_settings(database_url=database_url)
    policy = _policy(settings)
    if scenario not in policy.scenarios:
        print(f"citypulse: no scenario {scenario!r}", file=sys.stderr)
        raise typer.Exit(2)
    with _conn(settings) as conn:
        try:
            i = records.record_approval(conn, scenario, ref, route, by or getpass.getuser(), note)
        except ValueError as exc:
            print(f"citypulse: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
    print(json.dumps({"approval_id": i, "scenario": scenario, "reference": ref}))


@share_app.command("revoke")
def revoke_cmd(scenario: str = typer.Option(...), by: str = typer.Option(None),
               database_url: str = _DB) -> None:
    """Revoke a scenario's approvals (its negative-list fields are blocked again)."""
    from sharing import records

    settings = load_settings(database_url=database_url)
    with _conn(settings) as conn:
        n = records.revoke_approval(conn, scenario, by or getpass.getuser())
    print(json.dumps({"scenario": scenario, "revoked": n}))


@share_app.command("verify")
def verify_cmd(public_key: str = typer.Option(None, help="Base64 Ed25519 public key "
                                                         "(default: from the signing key)."),
               database_url: str = _DB) -> None:
    """Check the whole evidence chain and every signed head; exit 1 on any problem."""
    from sharing import evidence

    settings = load_settings(database_url=database_url)
    with _conn(settings) as conn:
        report = evidence.verify(conn, settings, public_key)
    print(json.dumps(report))
    raise typer.Exit(0 if report["ok"] else 1)


@share_app.command("receipt")
def receipt_cmd(evidence_id: str = typer.Argument(..., help="Evidence id (or seq)."),
                database_url: str = _DB) -> None:
    """Print what a recipient needs to check the file it got (JSON)."""
    from sharing import evidence

    settings = load_settings(database_url=database_url)
    with _conn(settings) as conn:
        r = evidence.receipt(conn, settings, evidence_id)
    if r is None:
        print(f"citypulse: no evidence {evidence_id}", file=sys.stderr)
        raise typer.Exit(2)
    print(json.dumps(r, indent=1, default=str))


@share_app.command("public-key")
def public_key_cmd() -> None:
    """Print the public key that verifies the chain heads (give it to recipients)."""
    from sharing import keys

    print(keys.public_key_b64(keys.signing_key(load_settings())))


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``citypulse share ...`` (its benchmarks are in :mod:`bench.share`)."""
    app.add_typer(share_app, name="share")
