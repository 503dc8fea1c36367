"""Policy files: a bad scenario, grading or negative list is refused naming the line."""

from __future__ import annotations

import pytest

from citypulse.settings import Settings
from sharing.policy import load_policy
from sharing.scenario import load_scenario
from sharing.yamlfile import PolicyError

GOOD = """title: t
purpose: testing
recipients: [{name: lab}]
destination: domestic
datasets:
  readings.water:
    fields:
      time:
      sensor_id: {pseudonymise: {}}
      level_m: {round_coords: {decimals: 2}}
"""


@pytest.mark.parametrize("old,new,line,words", [
    ("level_m: {round_coords: {decimals: 2}}", "level_m:", 0, ""),
    ("{round_coords: {decimals: 2}}", "{blur: {}}", 10, "unknown transform"),
    ("{round_coords: {decimals: 2}}", "{suppress_small: {k: 1}}", 10, "greater than or equal"),
    ("round_coords", "round_coords", 10, "applies to lon/lat"),
    ("level_m:", "level_cm:", 10, "has no field 'level_cm'"),
    ("readings.water", "readings.wate", 6, "unknown dataset"),
    ("destination: domestic\n", "", 1, "destination"),
    ("      time:\n", "      time:\n     oops: [\n", 9, "not valid YAML"),
    ("    fields:", "    aggregate: {space: segment}\n    fields:", 7, "cannot be aggregated"),
])
def test_bad_scenario_is_refused_naming_the_line(tmp_path, old, new, line, words):
    p = tmp_path / "s.yaml"
    p.write_text(GOOD.replace(old, new))
    if not words:
        assert load_scenario(p).steps[("readings.water", "sensor_id")][0].name == "pseudonymise"
        return
    with pytest.raises(PolicyError) as exc:
        load_scenario(p)
    msg = str(exc.value)
    assert f"{p} line {line}" in msg and words in msg, msg


def test_bad_grading_and_negative_list_name_the_line(tmp_path):
    g = tmp_path / "g.yaml"
    g.write_text("datasets:\n  registry:\n    gateway_id: secret\n")
    with pytest.raises(PolicyError, match=r"g.yaml line 3 .*gateway_id"):
        load_policy(Settings(share_grading_file=g))
    g.write_text("datasets:\n  registry:\n    gateway: core\n")
    with pytest.raises(PolicyError, match=r"line 3 .*no field 'gateway'"):
        load_policy(Settings(share_grading_file=g))
    n = tmp_path / "n.yaml"
    n.write_text("entries:\n  - dataset: nothing.*\n    fields: ['*']\n    reason: x\n"
                 "    route: security_assessment\n")
    with pytest.raises(PolicyError, match=r"n.yaml line 2 .*matches no dataset"):
        load_policy(Settings(share_negative_list_file=n))


def test_override_grading_and_core_wins_over_a_scenario(tmp_path):
    g = tmp_path / "g.yaml"
    g.write_text("datasets:\n  readings.water:\n    level_m: core\n")
    policy = load_policy(Settings(share_grading_file=g))
    d = policy.decide("flood_research", "readings.water", None)
    out = {f.field: f.outcome for f in d.fields}
    assert out["level_m"] == "forbidden" and out["rain_mm_h"] == "allowed"
    assert load_policy(Settings()).hash != policy.hash
