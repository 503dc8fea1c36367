"""What the data officer sees: scenarios and their outcomes, approvals, transfers, chain.

In: a connection and the policy.  Out: JSON-able summaries used by ``citypulse share
scenarios`` and the ``/sharing`` page.
"""

from __future__ import annotations

import psycopg
from psycopg.rows import dict_row

from sharing import records
from sharing.policy import Policy


def scenario_table(conn: psycopg.Connection, policy: Policy) -> list[dict]:
    """Every scenario with each dataset field's outcome given the recorded approvals."""
    out = []
    for name, sc in policy.scenarios.items():
        ref = records.active_approval(conn, name) if sc.cross_border else None
        datasets = [{"dataset": d, "aggregate": None if r.aggregate is None
                     else r.aggregate.model_dump(exclude_none=True),
                     "fields": [f.as_dict() for f in policy.decide(name, d, ref).fields]}
                    for d, r in sc.datasets.items()]
        out.append({"name": name, "title": sc.title, "purpose": sc.purpose,
                    "recipients": sc.recipient_names(), "destination": sc.destination,
                    "cross_border": sc.cross_border, "approval_ref": ref,
                    "pending_approval": [] if ref else policy.needs_approval(name),
                    "datasets": datasets})
    return out


def recent_transfers(conn: psycopg.Connection, limit: int = 20) -> list[dict]:
    """The latest evidence entries, newest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT seq, evidence_id::text, at, channel, recipient, scenario, dataset, format, "
            "row_count, outcome, approval_ref, jsonb_array_length(fields_withheld) AS withheld "
            "FROM citypulse_share.evidence ORDER BY seq DESC LIMIT %s", (limit,)).fetchall()
