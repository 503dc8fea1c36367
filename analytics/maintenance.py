"""Device upkeep apart from city incidents: two kinds of alert, two audiences.

In: open alerts as dicts (the fields of :class:`analytics.lifecycle.Alert`) and optionally a
:class:`~analytics.rules.RuleSet` (default: the loaded rules file).  Out: the alerts split
into city incidents (fire, gas, flood, crowd, traffic, and a gateway outage that blinds a
district: for the wall and /emergency) and device upkeep (silent sensors: work for field
crews, not for the wall), and the set of sensors that upkeep says are silent, so that the
wall's "sensors online" agrees with it.  Pure functions; call from any stage above analytics.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from analytics.rules import RuleSet, load_rules

# rule types whose alerts are about a device rather than the city
UPKEEP_TYPES = frozenset({"offline"})
# ... except at these entities, where the outage blinds a district: still an incident
INCIDENT_ENTITIES = frozenset({"gateway"})


@lru_cache(maxsize=4)
def _default_rules() -> RuleSet:
    return load_rules()


def upkeep_rule_ids(rules: RuleSet | None = None) -> frozenset[str]:
    """Ids of the rules whose alerts are device upkeep."""
    rules = rules or _default_rules()
    return frozenset(r.id for r in rules.rules if r.type in UPKEEP_TYPES)


def is_upkeep(alert: dict, upkeep_ids: frozenset[str]) -> bool:
    """Whether one alert is device upkeep (not for the wall)."""
    return alert["rule"] in upkeep_ids and alert["entity_kind"] not in INCIDENT_ENTITIES


def split(alerts: Iterable[dict], rules: RuleSet | None = None) -> tuple[list[dict], list[dict]]:
    """(city incidents, device upkeep), each in the order given."""
    ids = upkeep_rule_ids(rules)
    incidents, upkeep = [], []
    for a in alerts:
        (upkeep if is_upkeep(a, ids) else incidents).append(a)
    return incidents, upkeep


def silent_sensors(upkeep: Iterable[dict]) -> set[str]:
    """Sensor ids that open upkeep alerts name: the alert's sensor, or its scope's sensors."""
    out: set[str] = set()
    for a in upkeep:
        if a["entity_kind"] == "sensor":
            out.add(a["entity_id"])
        out.update(s for s in a.get("scope") or [] if isinstance(s, str))
    return out


def tickets(upkeep: Iterable[dict]) -> list[dict]:
    """One work item per silent device, grouped by zone (sorted by zone, then device).

    Each item: zone, device, problem, since (ISO), alert (id) and evidence (the alert's
    evidence as found: last seen, count).  An item goes when its alert auto-resolves, i.e.
    when the device reports again.
    """
    rows = []
    for a in upkeep:
        devices = [a["entity_id"]] if a["entity_kind"] == "sensor" else [
            s for s in a.get("scope") or [] if isinstance(s, str)]
        since = a.get("started_at")
        for dev in devices:
            rows.append({"zone": a.get("zone_id") or "", "device": dev,
                         "problem": a.get("title") or a["rule"],
                         "since": since.isoformat() if hasattr(since, "isoformat") else since,
                         "alert": a.get("id"), "evidence": a.get("evidence") or {}})
    return sorted(rows, key=lambda r: (r["zone"], r["device"]))


CSV_FIELDS = ("zone", "device", "problem", "since", "alert")


def tickets_csv(items: Iterable[dict], fields: Iterable[str] = CSV_FIELDS) -> str:
    """The work items as CSV for field crews (columns ``fields``, default ``CSV_FIELDS``)."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(items)
    return buf.getvalue()
