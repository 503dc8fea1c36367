import pytest

from citypulse.wire import topics as wt


@pytest.mark.parametrize(("topic", "prefix", "expected"), [
    ("city/v1/telemetry/s1", "city", wt.Topic(wt.TELEMETRY, "s1")),
    ("city/v1/telemetry/traffic-000123", "city", wt.Topic(wt.TELEMETRY, "traffic-000123")),
    ("city/v1/gateway/gw7/telemetry", "city", wt.Topic(wt.GATEWAY, "gw7")),
    ("city/v1/status/s1", "city", wt.Topic(wt.STATUS, "s1")),
    ("city/v1/alerts/critical/z3", "city", wt.Topic(wt.ALERT, "critical", "z3")),
    ("a/b/v1/telemetry/s1", "a/b", wt.Topic(wt.TELEMETRY, "s1")),
    # outside the contract
    ("city/v2/telemetry/s1", "city", wt.Topic(wt.UNKNOWN)),
    ("town/v1/telemetry/s1", "city", wt.Topic(wt.UNKNOWN)),
    ("city/v1/telemetry/", "city", wt.Topic(wt.UNKNOWN)),
    ("city/v1/telemetry/s1/extra", "city", wt.Topic(wt.UNKNOWN)),
    ("city/v1/telemetry", "city", wt.Topic(wt.UNKNOWN)),
    ("city/v1/gateway/gw7", "city", wt.Topic(wt.UNKNOWN)),
    ("city/v1/gateway//telemetry", "city", wt.Topic(wt.UNKNOWN)),
    ("city/v1/status/+", "city", wt.Topic(wt.UNKNOWN)),
    ("city/v1/telemetry/#", "city", wt.Topic(wt.UNKNOWN)),
    ("city/v1/telemetry/" + "x" * 129, "city", wt.Topic(wt.UNKNOWN)),
    ("", "city", wt.Topic(wt.UNKNOWN)),
    ("city/v1/metrics/s1", "city", wt.Topic(wt.UNKNOWN)),
])
def test_parse(topic, prefix, expected):
    assert wt.parse(topic, prefix) == expected


@pytest.mark.parametrize(("build", "ident", "kind"), [
    (wt.telemetry, "s-1", wt.TELEMETRY),
    (wt.gateway, "gw-9", wt.GATEWAY),
    (wt.status, "s-1", wt.STATUS),
])
def test_build_parse_roundtrip(build, ident, kind):
    assert wt.parse(build(ident, "p/q"), "p/q") == wt.Topic(kind, ident)


def test_ingest_subscriptions_cover_contract_topics():
    subs = wt.ingest_subscriptions("city")
    assert subs == ["city/v1/telemetry/+", "city/v1/gateway/+/telemetry", "city/v1/status/+"]
    assert wt.alert("warn", "z1") == "city/v1/alerts/warn/z1"


def test_command_topics_round_trip():
    for build, kind in ((wt.command, wt.COMMAND), (wt.command_response, wt.COMMAND_RESPONSE),
                        (wt.shadow_desired, wt.SHADOW_DESIRED),
                        (wt.shadow_reported, wt.SHADOW_REPORTED)):
        assert wt.parse(build("pmp-1", "c"), "c") == wt.Topic(kind, "pmp-1")
    assert wt.parse(wt.command_events("c"), "c") == wt.Topic(wt.COMMAND_EVENTS)
    assert wt.parse("c/v1/commands/pmp-1/other", "c").kind == wt.UNKNOWN
    assert wt.command_subscriptions("c") == ["c/v1/commands/+/response",
                                             "c/v1/shadow/+/reported"]
