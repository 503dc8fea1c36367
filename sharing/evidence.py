"""Evidence of every transfer: an append-only, hash-chained, signed log.

In: a psycopg connection (autocommit), the settings (signing key, heads file).
Out: :func:`append` adds one entry (chained to the previous by SHA-256, the new chain head
signed with Ed25519 and exported to the heads file) and returns it; :func:`verify` checks
the whole chain, every stored and exported head and every signature; :func:`receipt` is
what a recipient needs to check the file it got.  Entries live in
``citypulse_share.evidence`` (migration 060: UPDATE/DELETE/TRUNCATE refused).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from psycopg import sql
from psycopg.types.json import Jsonb

from citypulse.settings import Settings
from sharing import keys

GENESIS = "0" * 64
_LOCK = 0x5C17E_5BA2E  # advisory lock serialising appends to the chain
COLUMNS = ("seq", "evidence_id", "request_id", "at", "channel", "recipient", "scenario",
           "dataset", "policy_hash", "fields_delivered", "fields_withheld", "transforms",
           "time_from", "time_to", "format", "row_count", "byte_count", "sha256",
           "destination", "approval_ref", "outcome", "prev_hash")
_JSON = ("fields_delivered", "fields_withheld", "transforms")
_COLS = sql.SQL(", ").join(map(sql.Identifier, (*COLUMNS, "hash")))
_INSERT = sql.SQL("INSERT INTO citypulse_share.evidence ({}) VALUES ({})").format(
    _COLS, sql.SQL(", ").join([sql.Placeholder()] * (len(COLUMNS) + 1)))
_SELECT = sql.SQL("SELECT {} FROM citypulse_share.evidence").format(_COLS)


def _norm(v):
    if isinstance(v, datetime):
        return v.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(v, uuid.UUID):
        return str(v)
    return v


def canonical(rec: dict) -> bytes:
    """The exact bytes an entry's hash covers (every column but ``hash``)."""
    return json.dumps({k: _norm(rec[k]) for k in COLUMNS}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(rec: dict) -> str:
    """SHA-256 of the canonical entry."""
    return hashlib.sha256(canonical(rec)).hexdigest()


def _head_message(seq: int, hash_: str, signed_at: datetime) -> bytes:
    return f"citypulse-share-head:v1:{seq}:{hash_}:{_norm(signed_at)}".encode()


def heads_file(settings: Settings) -> Path:
    """Where signed heads are exported."""
    return Path(settings.share_heads_file or Path(settings.data_dir) / "share" / "heads.jsonl")


def _sign(conn: psycopg.Connection, key: Ed25519PrivateKey, seq: int, hash_: str) -> dict:
    at = datetime.now(UTC)
    head = {"seq": seq, "hash": hash_, "signed_at": _norm(at),
            "public_key": keys.public_key_b64(key),
            "signature": key.sign(_head_message(seq, hash_, at)).hex()}
    conn.execute("INSERT INTO citypulse_share.chain_heads VALUES (%s, %s, %s, %s, %s) "
                 "ON CONFLICT (seq) DO NOTHING",
                 (seq, hash_, at, head["public_key"], head["signature"]))
    return head


def export_head(settings: Settings, head: dict) -> None:
    """Append a signed head to the heads file (outside the database)."""
    path = heads_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(head, sort_keys=True) + "\n")


def append_many(conn: psycopg.Connection, settings: Settings, records: Iterable[dict],
                sign_every: int = 1) -> list[dict]:
    """Chain and store ``records`` (dicts of :data:`COLUMNS` without seq/prev_hash).

    One transaction under an advisory lock, so concurrent exporters never fork the chain.
    The head is signed every ``sign_every`` entries and after the last; signed heads are
    exported to the heads file once the transaction committed.
    """
    key = keys.signing_key(settings)
    out, heads = [], []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        row = conn.execute("SELECT seq, hash FROM citypulse_share.evidence "
                           "ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (row[0], row[1]) if row else (0, GENESIS)
        batch = []
        for rec in records:
            seq += 1
            rec = {**rec, "seq": seq, "prev_hash": prev}
            rec["hash"] = prev = entry_hash(rec)
            batch.append(tuple(Jsonb(rec[c]) if c in _JSON else rec[c]
                               for c in (*COLUMNS, "hash")))
            out.append(rec)
            if seq % sign_every == 0:
                heads.append((seq, prev))
        with conn.cursor() as cur:
            cur.executemany(_INSERT, batch)
        if out and (not heads or heads[-1][0] != seq):
            heads.append((seq, prev))
        signed = [_sign(conn, key, s, h) for s, h in heads]
    for head in signed:
        export_head(settings, head)
    return out


def new_record(**fields) -> dict:
    """A record with a fresh evidence id and the current time (other columns from kwargs)."""
    return {"evidence_id": uuid.uuid4(), "at": datetime.now(UTC), **fields}


def append(conn: psycopg.Connection, settings: Settings, record: dict) -> dict:
    """Chain, store and sign one entry; returns it with seq, prev_hash and hash."""
    return append_many(conn, settings, [record])[0]


def _check_head(head: dict, pub: Ed25519PublicKey, where: str, problems: list[str]) -> None:
    try:
        pub.verify(bytes.fromhex(head["signature"]),
                   _head_message(head["seq"], head["hash"],
                                 datetime.fromisoformat(str(head["signed_at"]))))
    except (InvalidSignature, ValueError):
        problems.append(f"{where}: head at seq {head['seq']} has a bad signature")


def verify(conn: psycopg.Connection, settings: Settings, public_key: str | None = None) -> dict:
    """Check every entry's hash and link, every stored and exported head and signature.

    Detects an altered entry (its hash), a deleted or reordered one (the links and the
    sequence), and a truncated chain (a signed head beyond or different from the chain).
    Returns ``{"ok", "entries", "heads_checked", "problems", "head"}``.
    """
    pub = keys.load_public_key(public_key or keys.public_key_b64(keys.signing_key(settings)))
    problems: list[str] = []
    heads = [dict(zip(("seq", "hash", "signed_at", "public_key", "signature"), r, strict=True))
             for r in conn.execute("SELECT seq, hash, signed_at, public_key, signature "
                                   "FROM citypulse_share.chain_heads ORDER BY seq")]
    for h in heads:
        h["signed_at"] = _norm(h["signed_at"])
    exported = []
    path = heads_file(settings)
    if path.exists():
        for i, line in enumerate(path.read_text().splitlines(), 1):
            try:
                exported.append(json.loads(line))
            except ValueError:
                problems.append(f"{path} line {i}: not a head")
    want = {h["seq"] for h in heads} | {h["seq"] for h in exported}
    at_seq: dict[int, str] = {}
    n, prev, expect = 0, GENESIS, 1
    with conn.transaction(), conn.cursor(name="share_verify") as cur:
        cur.itersize = 5000
        cur.execute(_SELECT + sql.SQL(" ORDER BY seq"))
        names = (*COLUMNS, "hash")
        for row in cur:
            rec = dict(zip(names, row, strict=True))
            n += 1
            if rec["seq"] != expect:
                problems.append(f"seq {expect}..{rec['seq'] - 1} missing (deleted entries)")
            if rec["prev_hash"] != prev:
                problems.append(f"seq {rec['seq']}: does not follow the entry before it "
                                "(deleted or reordered)")
            if entry_hash(rec) != rec["hash"]:
                problems.append(f"seq {rec['seq']}: contents altered (hash mismatch)")
            prev, expect = rec["hash"], rec["seq"] + 1
            if rec["seq"] in want:
                at_seq[rec["seq"]] = rec["hash"]
    last = expect - 1
    for where, hs in (("database", heads), (str(path), exported)):
        for h in hs:
            _check_head(h, pub, where, problems)
            if h["seq"] > last:
                problems.append(f"{where}: a signed head is at seq {h['seq']} but the chain "
                                f"ends at {last} (truncated)")
            elif at_seq.get(h["seq"]) != h["hash"]:
                problems.append(f"{where}: signed head at seq {h['seq']} differs from the "
                                "chain (rewritten)")
    return {"ok": not problems, "entries": n, "heads_checked": len(heads) + len(exported),
            "problems": problems[:50], "problem_count": len(problems),
            "head": {"seq": last, "hash": prev}}


def get(conn: psycopg.Connection, evidence_id: str) -> dict | None:
    """One entry by evidence id (or seq)."""
    col = "seq::text" if str(evidence_id).isdigit() else "evidence_id::text"
    row = conn.execute(_SELECT + sql.SQL(" WHERE " + col + " = %s"),
                       (str(evidence_id),)).fetchone()
    return None if row is None else dict(zip((*COLUMNS, "hash"), row, strict=True))


def receipt(conn: psycopg.Connection, settings: Settings, evidence_id: str) -> dict | None:
    """What a recipient needs to check its file: the entry, its hash and the signed head."""
    rec = get(conn, evidence_id)
    if rec is None:
        return None
    head = conn.execute("SELECT seq, hash, signed_at, public_key, signature FROM "
                        "citypulse_share.chain_heads WHERE seq >= %s ORDER BY seq LIMIT 1",
                        (rec["seq"],)).fetchone()
    entry = {k: _norm(rec[k]) for k in (*COLUMNS, "hash")}
    return {
        "evidence_id": entry["evidence_id"], "entry": entry,
        "check_file": f"sha256sum FILE must print {rec['sha256']} ({rec['byte_count']} bytes)",
        "entry_canonical": canonical(rec).decode(),
        "signed_head": None if head is None else dict(zip(
            ("seq", "hash", "signed_at", "public_key", "signature"),
            (head[0], head[1], _norm(head[2]), head[3], head[4]), strict=True)),
        "public_key": keys.public_key_b64(keys.signing_key(settings)),
    }
