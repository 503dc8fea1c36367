"""The evidence chain: append-only for every citypulse role; tampering caught by verify."""

from __future__ import annotations

import json

import psycopg
import pytest

from citypulse.settings import Settings
from sharing import evidence

ROLES = ("citypulse_migrator", "citypulse_collector", "citypulse_worker", "citypulse_dashboard")


def _rec(i: int) -> dict:
    return evidence.new_record(
        request_id=f"r{i}", channel="test", recipient="lab-a", scenario="two_labs",
        dataset="registry", policy_hash="p" * 64, fields_delivered=["kind"],
        fields_withheld=[{"field": "gateway_id", "outcome": "forbidden", "reason": "core"}],
        transforms={}, time_from=None, time_to=None, format="csv", row_count=i,
        byte_count=10 * i, sha256="0" * 64, destination="domestic", approval_ref=None,
        outcome="delivered")


@pytest.fixture
def chain(db_url, tmp_path):
    settings = Settings(database_url=db_url, data_dir=tmp_path / "data")
    with psycopg.connect(db_url, autocommit=True) as conn:
        for i in range(1, 6):
            evidence.append(conn, settings, _rec(i))
        yield conn, settings


def _problems(conn, settings) -> list[str]:
    report = evidence.verify(conn, settings)
    assert report["ok"] == (not report["problems"])
    return report["problems"]


def _tamper(conn, stmt: str, params=()) -> None:
    """What a superuser could do: switch the triggers off for one statement."""
    with conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute(stmt, params)


def test_no_citypulse_role_may_update_or_delete(chain):
    conn, _ = chain
    for role in ROLES:
        for stmt in ("UPDATE citypulse_share.evidence SET row_count = 0",
                     "DELETE FROM citypulse_share.evidence",
                     "TRUNCATE citypulse_share.evidence",
                     "DELETE FROM citypulse_share.chain_heads"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                conn.execute(f"SET LOCAL ROLE {role}")
                conn.execute(stmt)
    # the owner (here: the superuser) is refused by the trigger
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        conn.execute("DELETE FROM citypulse_share.evidence WHERE seq = 1")
    with conn.transaction():  # but the dashboard role may append
        conn.execute("SET LOCAL ROLE citypulse_dashboard")
        conn.execute("SELECT count(*) FROM citypulse_share.evidence")
    assert evidence.verify(conn, chain[1])["ok"]


def test_verify_detects_altered_deleted_reordered_and_truncated(chain):
    conn, settings = chain
    report = evidence.verify(conn, settings)
    assert report["ok"] and report["entries"] == 5 and report["heads_checked"] == 10
    # altered
    _tamper(conn, "UPDATE citypulse_share.evidence SET row_count = 999 WHERE seq = 3")
    assert any("seq 3: contents altered" in p for p in _problems(conn, settings))
    _tamper(conn, "UPDATE citypulse_share.evidence SET row_count = 3 WHERE seq = 3")
    assert not _problems(conn, settings)
    # deleted (in the middle)
    row = conn.execute("SELECT * FROM citypulse_share.evidence WHERE seq = 2").fetchone()
    _tamper(conn, "DELETE FROM citypulse_share.evidence WHERE seq = 2")
    probs = _problems(conn, settings)
    assert any("missing" in p for p in probs) and any("seq 3: does not follow" in p
                                                       for p in probs)
    _tamper(conn, "INSERT INTO citypulse_share.evidence VALUES (" + ", ".join(
        ["%s"] * len(row)) + ")", [json.dumps(v) if isinstance(v, list | dict) else v
                                   for v in row])
    assert not _problems(conn, settings)
    # reordered: entries 2 and 4 swap places (contents move, positions stay)
    _tamper(conn, """UPDATE citypulse_share.evidence e SET request_id = o.request_id,
                     row_count = o.row_count, byte_count = o.byte_count, hash = o.hash,
                     prev_hash = o.prev_hash, at = o.at
                     FROM citypulse_share.evidence o
                     WHERE (e.seq, o.seq) IN ((2, 4), (4, 2))""")
    assert any("does not follow" in p for p in _problems(conn, settings))
    _tamper(conn, """UPDATE citypulse_share.evidence e SET request_id = o.request_id,
                     row_count = o.row_count, byte_count = o.byte_count, hash = o.hash,
                     prev_hash = o.prev_hash, at = o.at
                     FROM citypulse_share.evidence o
                     WHERE (e.seq, o.seq) IN ((2, 4), (4, 2))""")
    assert not _problems(conn, settings)
    # truncated: the last entry and its signed head removed from the database; the
    # exported head (outside the database) still names it
    _tamper(conn, "DELETE FROM citypulse_share.evidence WHERE seq = 5")
    _tamper(conn, "DELETE FROM citypulse_share.chain_heads WHERE seq = 5")
    assert any("truncated" in p for p in _problems(conn, settings))


def test_a_forged_head_signature_is_caught(chain, tmp_path):
    conn, settings = chain
    other = Settings(database_url=settings.database_url, data_dir=tmp_path / "other")
    evidence.append(conn, other, _rec(6))  # signed with another key
    probs = _problems(conn, settings)
    assert any("bad signature" in p for p in probs)


def test_receipt_names_the_file_hash_and_signed_head(chain):
    conn, settings = chain
    rec = evidence.get(conn, "3")
    r = evidence.receipt(conn, settings, str(rec["evidence_id"]))
    assert r["entry"]["sha256"] == rec["sha256"] and r["entry"]["hash"] == rec["hash"]
    assert r["signed_head"]["seq"] == 3 and r["signed_head"]["hash"] == rec["hash"]
    assert evidence.entry_hash(json.loads(r["entry_canonical"])) == rec["hash"]
