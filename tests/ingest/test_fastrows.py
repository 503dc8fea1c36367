"""``fastdecode.rows``: the one-pass path stores exactly what the full path would, or refuses."""

import math

import msgspec
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from citypulse.wire import payload as wp
from citypulse.wire.topics import Topic
from ingest import fastdecode
from ingest.registry import Registered
from ingest.validate import Window, merge_rows, validate

NOW = 1_764_000_000_000
WINDOW = Window.around(NOW, 30, 60)
REG = {"s1": Registered(1, "traffic", None), "a1": Registered(2, "air", "gw"),
       "t2": Registered(3, "traffic", "gw"), "n1": Registered(4, "noise", "other")}
T, G = Topic("telemetry", "s1"), Topic("gateway", "gw")


def _full(payload, topic, ctype=None):
    d = fastdecode.decode(payload, topic, NOW, content_type=ctype)
    return validate(d, topic, "t", payload, NOW, REG, WINDOW)


value = st.one_of(st.floats(-50, 400), st.integers(-5, 300), st.just(math.nan),
                  st.just(math.inf))
reading = st.fixed_dictionaries(
    {"values": st.dictionaries(st.sampled_from(["speed_kmh", "vehicle_count", "pm25_ugm3",
                                                "bogus", "occupancy_pct"]), value, max_size=3)},
    optional={"ts": st.integers(NOW - 40 * 86_400_000, NOW + 120_000),
              "seq": st.integers(-2, 2**63 + 2)})
gw_doc = st.dictionaries(st.sampled_from(["a1", "t2", "n1", "zz", "s1"]),
                         st.lists(reading, min_size=1, max_size=3), max_size=3)


def _agree(doc, topic, msgpack):
    ctype = wp.CONTENT_MSGPACK if msgpack else None
    try:
        payload = msgspec.msgpack.encode(doc) if msgpack else orjson.dumps(doc)
    except (TypeError, orjson.JSONEncodeError):
        return
    fast = fastdecode.rows(payload, topic, NOW, ctype, REG, WINDOW, {})
    full = _full(payload, topic, ctype)
    if fast is None:  # refused: only when the full path has something to say
        assert full.dead or full.unknown_sensors or not full.rows or full.duplicates
    else:
        assert not full.dead and merge_rows(fast)[0] == list(full.rows)


@settings(max_examples=300, deadline=None)
@given(doc=st.one_of(reading, st.lists(reading, max_size=3)), msgpack=st.booleans())
def test_telemetry_rows_match_the_full_path_or_refuse(doc, msgpack):
    _agree(doc, T, msgpack)


@settings(max_examples=300, deadline=None)
@given(doc=gw_doc, msgpack=st.booleans())
def test_gateway_rows_match_the_full_path_or_refuse(doc, msgpack):
    _agree(doc, G, msgpack)


def test_refusals_each_named():
    good = {"ts": NOW, "seq": 1, "values": {"speed_kmh": 30}}
    assert fastdecode.rows(orjson.dumps(good), T, NOW, None, REG, WINDOW, {}) == [
        (fastdecode.to_time(NOW), 1, 1, None, 30.0, None, None, None, None, None, None)]
    cases = [
        (T, {**good, "values": {"bogus": 1}}),                 # unknown metric
        (T, {**good, "values": {"speed_kmh": 9999}}),          # out of range
        (T, {**good, "values": {}}),                           # no values
        (T, {**good, "seq": -1}),                              # bad seq
        (T, {**good, "ts": NOW + 3_600_000}),                  # too far ahead
        (T, {**good, "ts": "2025-11-24T16:00:00Z"}),           # a string ts: the full path
        (Topic("telemetry", "zz"), good),                      # unknown sensor
        (G, {"n1": [good]}),                                   # behind another gateway
    ]
    for topic, doc in cases:
        assert fastdecode.rows(orjson.dumps(doc), topic, NOW, None, REG, WINDOW, {}) is None, doc
    nan = msgspec.msgpack.encode({**good, "values": {"speed_kmh": math.nan}})
    assert fastdecode.rows(nan, T, NOW, wp.CONTENT_MSGPACK, REG, WINDOW, {}) is None
    assert fastdecode.rows(b"\xc1", T, NOW, wp.CONTENT_MSGPACK, REG, WINDOW, {}) is None
