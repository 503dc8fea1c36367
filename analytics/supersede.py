"""Supersession: one open alert per incident.

A rule's ``supersedes`` names lower rules.  An open alert of the higher rule that covers a
lower alert's place resolves it (the engine does, action ``supersede``) and takes over its
history (``started_at`` and a ``supersedes`` list in the evidence); while it is open, the
lower rule does not open for covered places.  Covered: the same entity, a member of the
scope, or a road segment just upstream of the scope (a queue growing).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from analytics.findings import Finding
from analytics.places import CityModel

AlertKey = tuple[str, str, str]  # rule, entity kind, entity id


class Supersession:
    """Which open alerts cover which (see module docstring)."""

    def __init__(self, rules: Any, city: CityModel) -> None:
        self.supersedes = {r.id: set(r.supersedes) for r in rules.active() if r.supersedes}
        self.city = city

    def covers(self, kind: str, ent: str, scope: Any, low_kind: str, low_ent: str) -> bool:
        """Whether an alert on (kind, ent) with ``scope`` covers (low_kind, low_ent)."""
        downstream = self.city.succ.get(low_ent, ()) if low_kind == "segment" else ()
        return covers(kind, ent, scope, low_kind, low_ent, downstream)

    def superseding(self, open_: dict[AlertKey, dict], rule_id: str, kind: str, ent: str
                    ) -> dict | None:
        """An open alert of a higher rule covering (rule_id, kind, ent), or None."""
        for (hr, hk, he), h in open_.items():
            if rule_id in self.supersedes.get(hr, ()) and self.covers(hk, he, h["scope"],
                                                                      kind, ent):
                return h
        return None

    def history(self, open_: dict[AlertKey, dict], rule_id: str, kind: str, ent: str,
                f: Finding, since_ms: int) -> tuple[datetime, dict]:
        """started_at and evidence of a new alert, taking over covered lower alerts' history."""
        started = datetime.fromtimestamp(since_ms / 1000, UTC)
        lows = self.supersedes.get(rule_id)
        if not lows:
            return started, f.evidence
        taken = sorted(((lr, a) for (lr, lk, le), a in open_.items()
                        if lr in lows and self.covers(kind, ent, f.scope, lk, le)),
                       key=lambda x: x[1]["started_at"])
        if not taken:
            return started, f.evidence
        return min(started, taken[0][1]["started_at"]), {
            **f.evidence, "supersedes": [{"id": a["id"], "rule": lr,
                                          "started": a["started_at"].isoformat()}
                                         for lr, a in taken]}

    def covered(self, open_: dict[AlertKey, dict]
                ) -> Iterator[tuple[AlertKey, dict, dict, str]]:
        """Open lower alerts covered by an open higher one: (key, lower, higher, higher rule)."""
        done: set[int] = set()
        for (hr, hk, he), h in open_.items():
            lows = self.supersedes.get(hr)
            if not lows:
                continue
            for (lr, lk, le), a in open_.items():
                if lr in lows and a["id"] not in done and self.covers(hk, he, h["scope"], lk,
                                                                      le):
                    done.add(a["id"])
                    yield (lr, lk, le), a, h, hr


def covers(kind: str, ent: str, scope: Any, low_kind: str, low_ent: str,
           downstream: Any = ()) -> bool:
    """Whether an alert on (kind, ent) with ``scope`` concerns the place of (low_kind, low_ent).

    Same entity, or the lower entity is a member of the scope (``"kind:id"`` or plain id).
    A road segment is also covered when a segment just downstream of it is: a queue growing
    upstream is the same incident, not a new one.
    """
    members = set(scope or ())
    if (kind, ent) == (low_kind, low_ent) or low_ent in members \
            or f"{low_kind}:{low_ent}" in members:
        return True
    if low_kind != "segment":
        return False
    if kind == "segment":
        members.add(ent)
    return any(d in members or f"segment:{d}" in members for d in downstream)
