import msgspec
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from citypulse.wire import payload as wp
from citypulse.wire.topics import Topic
from ingest import fastdecode

NOW = 1_764_000_000_000
T, G = Topic("telemetry", "s1"), Topic("gateway", "gw")

nums = st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.booleans(), st.none(),
                 st.text(max_size=3))
item = st.one_of(
    st.fixed_dictionaries({"values": st.dictionaries(st.text(max_size=6), nums, max_size=4)},
                          optional={"ts": st.one_of(st.integers(-(2**64), 2**64), st.none(), st.floats(),
                                                    st.just("2025-11-24T16:00:00Z"), st.booleans()),
                                    "seq": st.one_of(st.integers(-3, 2**64), st.none(), st.booleans(), st.floats()),
                                    "x": st.integers()}),
    st.dictionaries(st.text(max_size=6), nums, max_size=3),
    nums)
tele_docs = st.one_of(item, st.lists(item, max_size=4))
gw_docs = st.one_of(st.dictionaries(st.text(max_size=5), st.one_of(st.lists(item, max_size=3), item), max_size=4),
                    st.lists(item, max_size=2))


def _enc(doc, msgpack):
    try:
        return msgspec.msgpack.encode(doc) if msgpack else orjson.dumps(doc)
    except (TypeError, OverflowError, orjson.JSONEncodeError):
        return b"\x00not encodable"


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.tuples(st.just(T), tele_docs), st.tuples(st.just(G), gw_docs)), st.booleans())
def test_same_result_as_wire_decoder(topic_doc, msgpack):
    topic, doc = topic_doc
    ctype = wp.CONTENT_MSGPACK if msgpack else None
    data = _enc(doc, msgpack)
    assert fastdecode.decode(data, topic, NOW, content_type=ctype) == wp.decode(data, topic, NOW, content_type=ctype)


def test_well_formed_takes_the_fast_path():
    data = orjson.dumps({"a": [{"ts": 5, "seq": 1, "values": {"x": 1, "y": 2.5}}], "b": [{"values": {"z": 3}}]})
    d = fastdecode.decode(data, G, NOW)
    assert d == wp.decode(data, G, NOW)
    assert d.readings == (wp.Reading("a", 5, 1, (("x", 1.0), ("y", 2.5))), wp.Reading("b", NOW, None, (("z", 3.0),)))
    big = b"[" + b"1," * 1000 + b"1]"
    assert fastdecode.decode(big, T, NOW, max_bytes=1024).rejected[0].reason == wp.TOO_LARGE
