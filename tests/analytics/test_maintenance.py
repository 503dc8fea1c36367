"""Device upkeep is told apart from city incidents by the rules' types, not by names."""

from __future__ import annotations

from analytics import load_rules, maintenance


def _alert(rule: str, kind: str, entity: str, scope=(), severity="warning") -> dict:
    return {"rule": rule, "entity_kind": kind, "entity_id": entity, "scope": list(scope),
            "severity": severity}


def test_silent_sensors_are_upkeep_a_blind_gateway_and_incidents_are_not():
    rules = load_rules()
    assert "sensor_offline" in maintenance.upkeep_rule_ids(rules)
    assert "congestion" not in maintenance.upkeep_rule_ids(rules)
    zone = _alert("sensor_offline", "zone", "z-3", ["tr-1", "tr-2"])
    one = _alert("sensor_offline", "sensor", "air-9")
    gateway = _alert("sensor_offline", "gateway", "gw-4", ["tr-7"])
    jam = _alert("congestion", "segment", "s-1")
    incidents, upkeep = maintenance.split([zone, jam, one, gateway], rules)
    assert incidents == [jam, gateway]
    assert upkeep == [zone, one]
    assert maintenance.silent_sensors(upkeep) == {"tr-1", "tr-2", "air-9"}
