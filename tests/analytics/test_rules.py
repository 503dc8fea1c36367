"""Rules file: the default loads, malformed files are refused naming the line and problem."""

from __future__ import annotations

import pytest

import analytics
from analytics.rules import RulesError, load_rules, parse_rules
from citypulse.city.model import ZONE_TYPES


def test_default_rules_cover_every_incident_type():
    rs = load_rules()
    types = {r.type for r in rs.rules}
    assert {"threshold", "rate_of_change", "fire", "gas", "flood", "crowd", "congestion",
            "offline", "anomaly"} <= types
    assert all(r.severity in ("info", "warning", "critical") for r in rs.rules)


@pytest.mark.parametrize(("text", "line", "words"), [
    ("rules:\n  - id: a\n    type: threshold\n    severity: urgent\n    kind: water\n"
     "    metric: level_m\n    above: 3\n", 4, "'info', 'warning' or 'critical'"),
    ("rules:\n  - id: a\n    type: threshold\n    severity: info\n    kind: water\n"
     "    metric: level_cm\n    above: 3\n", 2, "no metric 'level_cm'"),
    ("rules:\n  - id: a\n    type: threshold\n    severity: info\n    kind: water\n"
     "    metric: level_m\n    above: 3\n    clear: 4\n", 2, "hysteresis"),
    ("rules:\n  - id: a\n    type: fire\n    severity: info\n    kind: fire\n"
     "    when:\n      - {alarm: 'about 1'}\n", 2, "is not '<op> <number>'"),
    ("rules:\n  - id: a\n    type: teleport\n    severity: info\n", 3, "teleport"),
    ("rules:\n  - id: a\n    type: offline\n    severity: info\n    factr: 3\n", 5,
     "Extra inputs are not permitted"),
    ("rules:\n  - id: a\n    type: offline\n    severity: info\n"
     "  - id: a\n    type: offline\n    severity: info\n", 1, "duplicate rule id 'a'"),
    ("rules:\n  - id: a\n   type: [\n", 3, "not valid YAML"),
])
def test_malformed_rules_name_line_and_problem(text, line, words):
    with pytest.raises(RulesError) as exc:
        parse_rules(text, "bad.yaml")
    msg = str(exc.value)
    assert f"bad.yaml line {line}" in msg
    assert words in msg


def test_missing_file_is_a_rules_error(tmp_path):
    with pytest.raises(RulesError, match="cannot read"):
        load_rules(tmp_path / "nope.yaml")


def test_ui_thresholds_come_from_the_rules():
    rs = parse_rules("""
rules:
  - {id: c, type: congestion, severity: warning, index_above: 0.7, clear_below: 0.5}
  - {id: p, type: crowd, severity: critical, limits: {Z-7: 400}}
""")
    ui = analytics.ui_thresholds(rs)
    assert ui["congestion_bands"] == [(0.0, 0.5, "free"), (0.5, 0.7, "slow"),
                                      (0.7, 1.0, "congested")]
    # the limits per zone type are the catalogue's (one source), single zones the rule's
    lim = ui["density_limits"]
    assert {t: lim[t] for t in ZONE_TYPES} == {t: v[1] for t, v in ZONE_TYPES.items()}
    assert lim["Z-7"] == 400 and lim["default"] == ZONE_TYPES["mixed"][1]
    crowd = next(r for r in rs.rules if r.id == "p")
    assert crowd.limit_for("Z-7", "plaza", 1500.0) == 400
    assert crowd.limit_for("Z-8", "plaza", 1500.0) == 1500  # the city model's (the type's)
    assert crowd.limit_for("Z-9", "metro_station") == ZONE_TYPES["metro_station"][1]


def test_crowd_limits_by_zone_type_are_refused_in_the_rules():
    with pytest.raises(RulesError, match=r"line 3 .*catalogue of zone types"):
        parse_rules("""
rules:
  - {id: p, type: crowd, severity: critical, limits: {plaza: 1500}}
""")


def test_rate_rule_takes_exactly_one_measure():
    base = ("rules:\n  - id: a\n    type: rate_of_change\n    severity: info\n"
            "    kind: traffic\n    metric: speed_kmh\n")
    assert parse_rules(base + "    drop_share: 0.6\n").rules[0].drop_share == 0.6
    with pytest.raises(RulesError, match="exactly one of"):
        parse_rules(base + "    drop_share: 0.6\n    fall_per_min: 10\n", "bad.yaml")
    with pytest.raises(RulesError, match="less than 1"):
        parse_rules(base + "    drop_share: 1.5\n", "bad.yaml")


def test_supersedes_names_known_rules_without_cycles():
    rs = load_rules()
    assert rs.by_id("crowd_density").supersedes == ["crowd_surge"]
    assert rs.by_id("congestion").supersedes == ["speed_collapse"]
    base = "rules:\n  - id: a\n    type: offline\n    severity: info\n"
    ok = parse_rules(base + "    supersedes: [b]\n  - id: b\n    type: offline\n"
                            "    severity: info\n")
    assert ok.by_id("a").supersedes == ["b"]


@pytest.mark.parametrize(("extra", "words"), [
    ("    supersedes: [crowd_srge]\n", "unknown rule id 'crowd_srge'"),
    ("    supersedes: [a]\n", "supersedes cycle a -> a"),
    ("    supersedes: [b]\n  - id: b\n    type: offline\n    severity: info\n"
     "    supersedes: [a]\n", "supersedes cycle a -> b -> a"),
])
def test_bad_supersedes_is_refused_naming_line_and_rule(extra, words):
    text = "rules:\n  - id: a\n    type: offline\n    severity: info\n" + extra
    with pytest.raises(RulesError) as exc:
        parse_rules(text, "bad.yaml")
    assert f"bad.yaml line 5 (rules.0.supersedes): {words}" in str(exc.value)


def test_suggested_actions_are_checked_against_the_command_catalogue():
    rules = load_rules()
    assert [a.method for a in rules.actions["flood_risk"]][0] == "start"
    text = ("rules:\n  - {id: heavy, type: threshold, severity: warning, kind: water,\n"
            "     metric: rain_mm_h, above: 30}\nactions:\n  heavy:\n"
            "    - {kind: pump, method: explode}\n")
    with pytest.raises(RulesError, match=r"line 6 .*has no method 'explode'"):
        parse_rules(text)
    with pytest.raises(RulesError, match="unknown rule id 'nope'"):
        parse_rules(text.replace("  heavy:\n", "  nope:\n").replace("explode", "stop"))
