import math

import msgspec
import pytest

from citypulse.wire import payload as wp
from citypulse.wire.topics import Topic

T = Topic("telemetry", "s1")
G = Topic("gateway", "gw1")
NOW = 1_764_000_000_000


def dec(data, topic=T, **kw):
    return wp.decode(data if isinstance(data, bytes) else data.encode(), topic, NOW, **kw)


def test_single_object():
    d = dec('{"ts": 1764000000123, "seq": 42, "values": {"speed_kmh": 38.5, "vehicle_count": 12}}')
    assert d.rejected == ()
    assert d.readings == (wp.Reading("s1", 1764000000123, 42,
                                     (("speed_kmh", 38.5), ("vehicle_count", 12.0))),)


def test_array_of_objects():
    d = dec('[{"ts": 1, "values": {"a": 1}}, {"ts": 2, "seq": 3, "values": {"b": 2.5}}]')
    assert [(r.ts_ms, r.seq, r.values) for r in d.readings] == [
        (1, None, (("a", 1.0),)), (2, 3, (("b", 2.5),))]


def test_bare_values_stamped_on_receipt():
    d = dec('{"speed_kmh": 10}')
    assert d.readings == (wp.Reading("s1", NOW, None, (("speed_kmh", 10.0),)),)


def test_gateway_payload():
    d = dec('{"a": [{"ts": 5, "seq": 1, "values": {"x": 1}}], "b": {"ts": 6, "values": {"y": 2}}}', G)
    assert {(r.sensor_id, r.ts_ms) for r in d.readings} == {("a", 5), ("b", 6)}
    assert d.rejected == ()


@pytest.mark.parametrize(("ts", "expected"), [
    (1764000000123, 1764000000123),
    (1764000000123.7, 1764000000123),
    ('"2025-11-24T16:00:00.123Z"', 1764000000123),
    ('"2025-11-25T00:00:00.123+08:00"', 1764000000123),
])
def test_timestamp_forms(ts, expected):
    d = dec('{"ts": ' + str(ts) + ', "values": {"a": 1}}')
    assert d.readings[0].ts_ms == expected


@pytest.mark.parametrize("ts", ['"2025-11-24T16:00:00"', '"yesterday"', "true", "[1]", "1e300"])
def test_bad_timestamps(ts):
    d = dec('{"ts": ' + str(ts) + ', "values": {"a": 1}}')
    assert d.readings == ()
    assert [r.reason for r in d.rejected] == [wp.BAD_TIMESTAMP]


@pytest.mark.parametrize(("data", "reason"), [
    (b"not json", wp.MALFORMED),
    (b"\xff\xfe", wp.MALFORMED),
    (b'{"ts": 1, "values": 5}', wp.MALFORMED),
    (b'{"ts": 1, "seq": -1, "values": {"a": 1}}', wp.MALFORMED),
    (b'{"ts": 1, "seq": "x", "values": {"a": 1}}', wp.MALFORMED),
    (b'{"ts": 1, "values": {}}', wp.MALFORMED),
    (b"[1, 2]", wp.MALFORMED),
    (b"x" * 2000, wp.TOO_LARGE),
])
def test_message_level_rejections(data, reason):
    d = dec(data, max_bytes=1024)
    assert d.readings == ()
    assert d.rejected and {r.reason for r in d.rejected} == {reason}


def test_non_numeric_value_rejected_others_kept():
    d = dec('{"ts": 1, "values": {"a": 1, "b": "high", "c": null}}')
    assert d.readings[0].values == (("a", 1.0),)
    assert [r.reason for r in d.rejected] == [wp.MALFORMED, wp.MALFORMED]


def test_gateway_must_be_object():
    d = dec("[1]", G)
    assert d.readings == () and d.rejected[0].reason == wp.MALFORMED


def test_msgpack_roundtrip():
    doc = {"ts": 7, "seq": 1, "values": {"a": 2.5}}
    data = wp.encode(doc, wp.CONTENT_MSGPACK)
    assert msgspec.msgpack.decode(data) == doc
    d = dec(data, content_type=wp.CONTENT_MSGPACK)
    assert d.readings == (wp.Reading("s1", 7, 1, (("a", 2.5),)),)


def test_nan_is_rejected():
    d = dec(wp.encode({"ts": 1, "values": {"a": math.nan, "b": 1}}, wp.CONTENT_MSGPACK),
            content_type=wp.CONTENT_MSGPACK)
    assert d.readings[0].values == (("b", 1.0),)
    assert d.rejected[0].reason == wp.MALFORMED


def test_deep_nesting_never_raises():
    d = dec(b"[" * 100_000 + b"]" * 100_000)
    assert d.readings == () and d.rejected[0].reason == wp.MALFORMED
