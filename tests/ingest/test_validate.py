import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from citypulse.wire import payload as wp
from citypulse.wire import topics as wt
from ingest.registry import Registered
from ingest.validate import Window, merge_rows, to_time, validate

NOW = 1_764_000_000_000
WINDOW = Window.around(NOW, 7, 300)
REG = {
    "t1": Registered(1, "traffic", None),
    "t2": Registered(2, "traffic", "gwA"),
    "f1": Registered(3, "fire", "gwA"),
}


def run(doc, topic="city/v1/telemetry/t1"):
    data = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    t = wt.parse(topic)
    return validate(wp.decode(data, t, NOW), t, topic, data, NOW, REG, WINDOW)


def test_good_reading_becomes_slot_row():
    v = run({"ts": NOW, "seq": 5, "values": {"speed_kmh": 40, "battery_pct": 90}})
    assert v.dead == ()
    assert v.rows == ((to_time(NOW), 1, 5, None, 40.0, None, 90.0, None, None, None, None),)


def test_each_reason():
    cases = [
        ({"ts": NOW, "values": {"speed_kmh": 1}}, "city/v1/telemetry/nope", wp.UNKNOWN_SENSOR),
        ({"t1": [{"ts": NOW, "values": {"speed_kmh": 1}}]}, "city/v1/gateway/gwA/telemetry",
         wp.WRONG_GATEWAY),
        ({"t2": [{"ts": NOW, "values": {"speed_kmh": 1}}]}, "city/v1/gateway/gwB/telemetry",
         wp.WRONG_GATEWAY),
        ({"ts": NOW, "values": {"smoke_pct": 1}}, "city/v1/telemetry/t1", wp.UNKNOWN_METRIC),
        ({"ts": NOW, "values": {"speed_kmh": 900}}, "city/v1/telemetry/t1", wp.OUT_OF_RANGE),
        ({"ts": NOW - 8 * 86_400_000, "values": {"speed_kmh": 1}}, "city/v1/telemetry/t1",
         wp.BAD_TIMESTAMP),
        ({"ts": NOW + 301_000, "values": {"speed_kmh": 1}}, "city/v1/telemetry/t1",
         wp.BAD_TIMESTAMP),
        (b"{", "city/v1/telemetry/t1", wp.MALFORMED),
    ]
    for doc, topic, reason in cases:
        v = run(doc, topic)
        assert v.rows == (), (doc, topic)
        assert [d.reason for d in v.dead] == [reason], (doc, topic)
        assert v.dead[0].topic == topic and v.dead[0].payload


def test_gateway_right_gateway_lands():
    v = run({"t2": [{"ts": NOW, "values": {"speed_kmh": 3}}],
             "f1": [{"ts": NOW, "seq": 1, "values": {"alarm": 1}}]},
            "city/v1/gateway/gwA/telemetry")
    assert v.dead == ()
    assert sorted(r[1] for r in v.rows) == [2, 3]


def test_valid_metrics_stored_when_another_is_bad():
    v = run({"ts": NOW, "seq": 1, "values": {"speed_kmh": 40, "occupancy_pct": 101,
                                             "colour": 3, "vehicle_count": 2}})
    assert v.rows == ((to_time(NOW), 1, 1, 2.0, 40.0, None, None, None, None, None, None),)
    assert sorted(d.reason for d in v.dead) == [wp.OUT_OF_RANGE, wp.UNKNOWN_METRIC]
    bad = orjson.loads(next(d for d in v.dead if d.reason == wp.OUT_OF_RANGE).payload)
    assert bad == {"sensor_id": "t1", "ts": NOW, "seq": 1, "values": {"occupancy_pct": 101.0}}


def test_same_sensor_time_merged_first_value_wins():
    v = run([{"ts": NOW, "values": {"speed_kmh": 1}}, {"ts": NOW, "seq": 9, "values": {"speed_kmh": 2, "vehicle_count": 4}}])
    assert v.rows == ((to_time(NOW), 1, 9, 4.0, 1.0, None, None, None, None, None, None),)
    assert v.duplicates == 1


def test_merge_rows_across_batch():
    a = (to_time(1), 1, 1, 1.0) + (None,) * 7
    b = (to_time(1), 1, 1, 2.0, 5.0) + (None,) * 6
    c = (to_time(2), 1, 2, 1.0) + (None,) * 7
    rows, dups = merge_rows([a, b, c])
    assert rows == [(to_time(1), 1, 1, 1.0, 5.0) + (None,) * 6, c] and dups == 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda ch: st.lists(ch, max_size=4) | st.dictionaries(st.text(max_size=12), ch, max_size=4),
    max_leaves=20)
reading_like = st.fixed_dictionaries({
    "ts": st.one_of(st.integers(NOW - 10**10, NOW + 10**7), st.text(max_size=5), st.none()),
    "values": st.dictionaries(st.sampled_from(["speed_kmh", "vehicle_count", "alarm", "x"]),
                              st.one_of(st.floats(allow_nan=True), st.integers(), st.text(max_size=3)),
                              max_size=4),
}, optional={"seq": st.one_of(st.integers(-5, 10**20), st.text(max_size=3))})
topics = st.sampled_from(["city/v1/telemetry/t1", "city/v1/telemetry/zz", "city/v1/gateway/gwA/telemetry",
                          "city/v1/status/t1", "junk", "city/v1/gateway/gwB/telemetry"])


def _check(data: bytes, topic: str):
    t = wt.parse(topic)
    d = wp.decode(data, t, NOW, max_bytes=4096)
    v = validate(d, t, topic, data, NOW, REG, WINDOW)
    # every reading is a row (or part of one) or a dead letter; nothing vanishes
    n_values = sum(len(r.values) for r in d.readings)
    assert len(v.rows) + len(v.dead) >= (1 if n_values or d.rejected else 0)
    assert len(v.dead) >= len(d.rejected)
    keys = {(r[1], r[0]) for r in v.rows}
    dead_sids = {dl.sensor_id for dl in v.dead}
    for rd in d.readings:
        reg = REG.get(rd.sensor_id)
        stored_as = rd.sensor_id.replace("\x00", "\\x00")  # dead letters hold no NUL
        assert (reg is not None and (reg.id, to_time(rd.ts_ms)) in keys) or stored_as in dead_sids
    for r in v.rows:
        assert any(x is not None for x in r[3:])
    for dl in v.dead:
        assert dl.reason in wp.REASONS and isinstance(dl.payload, bytes)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), topics)
def test_any_bytes_never_raise(data, topic):
    _check(data, topic)


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values, reading_like, st.lists(reading_like, max_size=3),
                 st.dictionaries(st.sampled_from(["t1", "t2", "f1", "q"]), st.lists(reading_like, max_size=2))),
       topics)
def test_any_json_never_raises(doc, topic):
    try:
        data = orjson.dumps(doc)
    except (TypeError, orjson.JSONEncodeError):
        data = repr(doc).encode()
    _check(data, topic)


def test_clock_ahead_policy_restamps_keeping_the_original_or_dead_letters():
    now = NOW
    topic = wt.parse("city/v1/telemetry/t1")
    body = b'{"ts": %d, "values": {"speed_kmh": 50}}' % (now + 240_000)
    decoded = wp.decode(body, topic, now)
    ahead = Window.around(now, 7, 300, clock_ahead_s=5, policy="restamp")
    v = validate(decoded, topic, "city/v1/telemetry/t1", body, now, REG, ahead)
    assert [r[0].timestamp() * 1000 for r in v.rows] == [now]  # stored at its arrival
    (kept,) = v.dead
    assert kept.reason == wp.RESTAMPED and b"%d" % (now + 240_000) in kept.payload
    assert "ahead by 240.0 s" in kept.detail
    strict = Window.around(now, 7, 300, clock_ahead_s=5, policy="dead_letter")
    v = validate(decoded, topic, "city/v1/telemetry/t1", body, now, REG, strict)
    assert v.rows == () and [d.reason for d in v.dead] == [wp.CLOCK_AHEAD]
    # within the threshold: the device time is kept
    near = wp.decode(b'{"ts": %d, "values": {"speed_kmh": 50}}' % (now + 2_000), topic, now)
    v = validate(near, topic, "city/v1/telemetry/t1", body, now, REG, ahead)
    assert [r[0].timestamp() * 1000 for r in v.rows] == [now + 2_000] and v.dead == ()
    # too far ahead for any policy: bad_timestamp, with the skew in the detail
    far = wp.decode(b'{"ts": %d, "values": {"speed_kmh": 50}}' % (now + 900_000), topic, now)
    v = validate(far, topic, "city/v1/telemetry/t1", body, now, REG, ahead)
    assert [d.reason for d in v.dead] == [wp.BAD_TIMESTAMP]
    assert "ahead by 900.0 s" in v.dead[0].detail
