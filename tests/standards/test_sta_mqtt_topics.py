"""The SensorThings MQTT relay's pure part and its place in `citypulse up`."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

import citypulse.cli  # noqa: F401 - registers every stage's commands and services
from citypulse.commands import UP_SERVICES, UP_WHEN
from citypulse.settings import Settings
from citypulse.wire import committed as wc
from standards.sta.model import datastream_id, observation_id
from standards.sta.mqtt import messages

T = datetime(2026, 12, 1, 7, 30, 15, 123456, tzinfo=UTC)
BASE = "https://ops.example/sta/v1.1"


def test_one_message_per_non_null_slot_on_its_datastream():
    out = messages([wc.Reading(T, 7, (1.5, None, 3.0))], BASE)
    ms = int(T.timestamp() * 1000)
    ids = [observation_id(datastream_id(7, s), ms) for s in (0, 2)]
    assert [t for t, _ in out] == [f"v1.1/Datastreams({datastream_id(7, s)})/Observations"
                                   for s in (0, 2)]
    first = orjson.loads(out[0][1])
    assert first == {
        "@iot.id": ids[0], "@iot.selfLink": f"{BASE}/Observations({ids[0]})",
        "phenomenonTime": "2026-12-01T07:30:15.123Z", "resultTime": "2026-12-01T07:30:15.123Z",
        "result": 1.5,
        "Datastream@iot.navigationLink": f"{BASE}/Observations({ids[0]})/Datastream",
        "FeatureOfInterest@iot.navigationLink":
            f"{BASE}/Observations({ids[0]})/FeatureOfInterest"}
    assert ids[0] >> 42 == datastream_id(7, 0) and ids[0] & ((1 << 42) - 1) == ms


def test_entity_set_topic_on_request():
    out = messages([wc.Reading(T, 7, (1.5,))], BASE, entity_set=True)
    assert [t for t, _ in out] == [f"v1.1/Datastreams({datastream_id(7, 0)})/Observations",
                                   "v1.1/Observations"]
    assert out[0][1] == out[1][1]


def test_up_runs_the_relay_only_when_enabled():
    assert ("sta-mqtt", ["sta", "mqtt"]) in UP_SERVICES
    assert not getattr(Settings(), UP_WHEN["sta-mqtt"])  # off by default
    assert getattr(Settings(sta_mqtt=True), UP_WHEN["sta-mqtt"])


def test_self_links_follow_the_public_url():
    assert Settings(web_public_url="https://ops.example/").web_url == "https://ops.example"
    assert Settings(dashboard_port=8123).web_url == "http://127.0.0.1:8123"
