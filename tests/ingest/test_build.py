"""The collector's message -> batch step never raises, whatever arrives (no broker, no DB)."""

import time

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from citypulse.settings import Settings
from citypulse.wire import payload as wp
from ingest.collector import Batch, Collector, Message, Spool
from ingest.registry import Registered
from ingest.validate import to_time

PREFIX = "city"
TOPICS = ["city/v1/telemetry/t1", "city/v1/telemetry/zz", "city/v1/gateway/gw/telemetry",
          "city/v1/status/t1", "city/v1/gateway/other/telemetry"]


def _collector(tmp_path_factory):
    c = Collector(Settings(spool_dir=tmp_path_factory.mktemp("spool"), max_payload_bytes=2048),
                  client_id="unit")
    c.registry = {"t1": Registered(1, "traffic", "gw"), "g2": Registered(2, "gas", "gw")}
    c._db_down.set()  # no registry refresh: no database here
    return c


def _msgs(items):
    now = int(time.time() * 1000)
    return [Message(0, i + 1, 1, topic, data, now, ctype, limited)
            for i, (topic, data, ctype, limited) in enumerate(items)]


payloads = st.one_of(
    st.binary(max_size=400),
    st.builds(lambda d: orjson.dumps(d), st.dictionaries(
        st.sampled_from(["t1", "g2", "zz", "ts", "values", "seq", "\x00"]),
        st.one_of(st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), st.text(max_size=4),
                  st.lists(st.fixed_dictionaries({"ts": st.integers(0, 2**45),
                                                  "values": st.dictionaries(st.text(max_size=8), st.floats(allow_nan=False), max_size=3)}),
                           max_size=3)), max_size=4)))
items = st.tuples(st.sampled_from(TOPICS), payloads,
                  st.sampled_from([None, wp.CONTENT_JSON, wp.CONTENT_MSGPACK]), st.booleans())


@settings(max_examples=200, deadline=None)
@given(st.lists(items, min_size=1, max_size=8))
def test_build_never_raises_and_accounts_every_message(tmp_path_factory, batch_items):
    c = _collector(tmp_path_factory)
    msgs = _msgs(batch_items)
    b = c._build(msgs, None)
    assert isinstance(b, Batch)
    keys = [(r[1], r[0]) for r in b.rows]
    assert len(keys) == len(set(keys))  # unique by (sensor, time) as Store.write_rows needs
    for m in msgs:
        if m.topic.startswith("city/v1/status/"):
            continue
        if m.rate_limited:
            assert any(d.reason == wp.RATE_LIMITED and d.payload == m.payload for d in b.dead)
    for d in b.dead:
        assert "\x00" not in d.detail and (d.sensor_id is None or "\x00" not in d.sensor_id)
    # a spooled batch comes back identical
    assert Spool.decode(Spool.encode(b)) == b


def test_status_and_spool_roundtrip(tmp_path):
    c = Collector(Settings(spool_dir=tmp_path, spool_max_bytes=10_000), client_id="unit")
    c.registry = {"t1": Registered(1, "traffic", None)}
    now = int(time.time() * 1000)
    b = c._build(_msgs([("city/v1/status/t1", b"online", None, False),
                        ("city/v1/status/t1", b"zzz", None, False),
                        ("city/v1/telemetry/t1", orjson.dumps({"ts": now, "seq": 3, "values": {"speed_kmh": 5}}), None, False)]), None)
    assert [s[:2] for s in b.status] == [("t1", "online")]
    assert [d.reason for d in b.dead] == ["malformed"]
    assert b.rows == ((to_time(now), 1, 3, None, 5.0) + (None,) * 6,)
    assert c.spool.put(b) and c.spool.bytes > 0
    (f,) = c.spool.files()
    assert Spool.decode(f.read_bytes()) == b
    c.spool.remove(f)
    assert c.spool.bytes == 0
    big = Batch(b.rows * 1, b.dead * 200, ())
    assert not c.spool.put(big)  # full: the caller must not ack


def test_seq_gaps_and_late_arrivals(tmp_path):
    c = Collector(Settings(spool_dir=tmp_path), client_id="unit")
    t = [to_time(1_764_000_000_000 + i) for i in range(10)]

    def rows(*seqs):
        return Batch(tuple((t[q], 1, q) + (1.0,) + (None,) * 7 for q in seqs), (), ())

    c._account(rows(0, 1, 4))      # 2 and 3 missing
    c._account(rows(2))            # 2 arrives late
    assert c.metrics.value("citypulse_ingest_seq_gaps_total") == 2
    assert c.metrics.value("citypulse_ingest_seq_late_total") == 1


def test_seq_accounting_when_the_highest_seq_arrives_first(tmp_path):
    # writer threads can commit batches out of order: seq 4 is seen before 1, 2, 3
    c = Collector(Settings(spool_dir=tmp_path), client_id="unit")
    t = [to_time(1_764_000_000_000 + i) for i in range(10)]

    def rows(*seqs):
        return Batch(tuple((t[q], 1, q) + (1.0,) + (None,) * 7 for q in seqs), (), ())

    c._account(rows(4))
    c._account(rows(1, 2, 3))
    gaps = c.metrics.value("citypulse_ingest_seq_gaps_total")
    late = c.metrics.value("citypulse_ingest_seq_late_total")
    assert gaps == late == 2  # nothing lost: every gap was filled
    c._account(rows(7))         # 5 and 6 never arrive
    assert c.metrics.value("citypulse_ingest_seq_gaps_total") - c.metrics.value(
        "citypulse_ingest_seq_late_total") == 2
