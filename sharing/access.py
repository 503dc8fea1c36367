"""What a sharing recipient may read through the standard APIs (SensorThings, NGSI-LD).

In: the policy, a scenario and its recorded approval.  Out: :func:`reading_access` ->
:class:`Access`, derived only from :meth:`sharing.policy.Policy.decide` (THE policy
function the exports call) over the scenario's ``readings.<kind>`` datasets.

The standard APIs serve raw, per-sensor values under the real sensor ids, so a field is
visible there only where the export would deliver it unchanged: a kind is visible when
its dataset is not aggregated and ``time`` and ``sensor_id`` are delivered without a
transform; its metrics, position (``lon``/``lat``), zone and segment each when delivered
without a transform.  Everything else is absent.  :func:`audit_record` is the evidence
entry of one such read (same chain as the exports).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from citypulse.catalogue import KINDS
from sharing import evidence
from sharing.policy import ALLOWED, Policy


@dataclass(frozen=True)
class Access:
    """Per kind: the visible metrics, and whether position, zone and segment are."""

    scenario: str
    metrics: dict[str, frozenset[str]] = field(default_factory=dict)
    position: frozenset[str] = frozenset()
    zone: frozenset[str] = frozenset()
    segment: frozenset[str] = frozenset()
    delivered: tuple[str, ...] = ()
    withheld: tuple[dict, ...] = ()

    @property
    def kinds(self) -> list[str]:
        """The visible kinds, in catalogue order."""
        return [k for k in KINDS if k in self.metrics]

    def slot_kinds(self, slot: int) -> list[str]:
        """Kinds whose metric in ``slot`` is visible."""
        return [k for k in self.kinds
                if slot < len(KINDS[k].metrics) and KINDS[k].metrics[slot].name in self.metrics[k]]


def reading_access(policy: Policy, scenario: str, approval_ref: str | None) -> Access:
    """The :class:`Access` of ``scenario`` (KeyError for an unknown scenario)."""
    sc = policy.scenario(scenario)
    metrics: dict[str, frozenset[str]] = {}
    pos, zone, seg, delivered, withheld = set(), set(), set(), [], []
    for dataset, rule in sc.datasets.items():
        kind = dataset.removeprefix("readings.")
        if kind == dataset or kind not in KINDS:
            continue
        d = policy.decide(scenario, dataset, approval_ref)
        plain = {f.field for f in d.fields if f.outcome == ALLOWED and not f.transforms}
        if rule.aggregate is not None or not {"time", "sensor_id"} <= plain:
            withheld.append({"field": f"{dataset}.*", "outcome": "forbidden",
                             "reason": "aggregated or transformed ids: not served raw"})
            continue
        names = {m.name for m in KINDS[kind].metrics}
        metrics[kind] = frozenset(plain & names)
        if {"lon", "lat"} <= plain:
            pos.add(kind)
        if "zone_id" in plain:
            zone.add(kind)
        if "segment_id" in plain:
            seg.add(kind)
        delivered += [f"{dataset}.{n}" for n in sorted(plain)]
        withheld += [{**w, "field": f"{dataset}.{w['field']}"} for w in d.withheld]
        withheld += [{"field": f"{dataset}.{f.field}", "outcome": "forbidden",
                      "reason": "transformed: not served raw"}
                     for f in d.fields if f.outcome == ALLOWED and f.transforms]
    return Access(scenario, metrics, frozenset(pos), frozenset(zone), frozenset(seg),
                  tuple(delivered), tuple(withheld))


def audit_record(policy: Policy, access: Access, *, recipient: str, channel: str,
                 request_id: str, path: str, body: bytes, rows: int, status: int,
                 destination: str, approval_ref: str | None) -> dict:
    """The evidence entry of one standard-API read by a recipient."""
    return evidence.new_record(
        request_id=request_id, channel=channel, recipient=recipient, scenario=access.scenario,
        dataset=path, policy_hash=policy.hash, fields_delivered=list(access.delivered),
        fields_withheld=list(access.withheld), transforms={}, time_from=None, time_to=None,
        format="json", row_count=rows, byte_count=len(body),
        sha256=hashlib.sha256(body).hexdigest(), destination=destination,
        approval_ref=approval_ref, outcome="delivered" if status < 400 else "refused")
