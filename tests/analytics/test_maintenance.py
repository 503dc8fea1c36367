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


def test_tickets_one_per_silent_device_grouped_by_zone_and_csv():
    upkeep = [_alert("sensor_offline", "zone", "z-2", ["tr-9", "tr-1"]),
              _alert("sensor_offline", "sensor", "air-3")]
    upkeep[0].update(zone_id="z-2", id=7, title="sensors offline: zone z-2")
    upkeep[1].update(zone_id="z-1", id=8, title="sensor offline: air-3")
    items = maintenance.tickets(upkeep)
    assert [(t["zone"], t["device"], t["alert"]) for t in items] == [
        ("z-1", "air-3", 8), ("z-2", "tr-1", 7), ("z-2", "tr-9", 7)]
    lines = maintenance.tickets_csv(items).splitlines()
    assert lines[0] == "zone,device,problem,since,alert"
    assert lines[1].startswith("z-1,air-3,sensor offline: air-3,")
    assert len(lines) == 4
