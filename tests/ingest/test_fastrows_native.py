"""The C pass of ``fastdecode.rows`` (ingest/_fastrows.c): the typed path's rows, or refuse.

For any payload it either returns exactly the rows the msgspec path returns, or None (and
the msgspec path then decides).  Checked on generated documents in several JSON spellings
and on randomly mutated bytes; well-formed plain payloads must be taken by the C pass.
"""

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import adapt, postgres
from psycopg._copy_base import BinaryFormatter  # psycopg's own COPY formatting, compared with
from psycopg.pq import Format

from citypulse.catalogue import MAX_SLOTS
from citypulse.schema.store import COPY_HEADER, COPY_TRAILER, RAW_TYPES
from citypulse.wire.topics import Topic
from ingest import fastdecode
from ingest.registry import Registered
from ingest.validate import Window

NOW = 1_764_000_000_000
WINDOW = Window.around(NOW, 30, 60)
REG = {"s1": Registered(1, "traffic", None), "a1": Registered(2, "air", "gw"),
       "t2": Registered(3, "traffic", "gw"), "n1": Registered(4, "noise", "other")}
T, G = Topic("telemetry", "s1"), Topic("gateway", "gw")
NATIVE = fastdecode.native
needs_native = pytest.mark.skipif(NATIVE is None, reason="ingest._fastrows is not built")


def test_the_c_pass_is_built_by_the_install():
    """`make deps` compiles it; without it the collector silently runs the slower path."""
    assert NATIVE is not None, "ingest/_fastrows.c was not compiled: run `make deps`"


def _psycopg_copy(rows) -> bytes:
    """psycopg's own binary COPY of ``rows`` (header, rows, trailer), to compare bytes with."""
    tx = adapt.Transformer()
    tx.set_dumper_types([postgres.types.get(t).oid for t in RAW_TYPES], Format.BINARY)
    f = BinaryFormatter(tx)
    return b"".join(bytes(f.write_row(r)) for r in rows) + bytes(f.end())


def _c(payload: bytes, topic: Topic):
    """The C pass's rows; its COPY data must be psycopg's formatting of them, byte for byte."""
    gw = topic.kind == "gateway"
    copy = bytearray(b"earlier")
    out = NATIVE.rows(payload, topic.ident if gw else None, None if gw else topic.ident, NOW,
                      REG, fastdecode._NATIVE_LIMITS, WINDOW.oldest_ms, WINDOW.newest_ms, {},
                      fastdecode.to_time, MAX_SLOTS, copy)
    if out is None:
        assert copy == b"earlier"  # a refused message adds nothing
    else:
        assert COPY_HEADER + copy[7:] + COPY_TRAILER == _psycopg_copy(out)
    return out


def _typed(payload: bytes, topic: Topic):
    dec = fastdecode._DECODERS[(topic.kind, False)]
    return fastdecode._typed(payload, topic, NOW, dec, REG, WINDOW.oldest_ms, WINDOW.newest_ms,
                             {})


def _check(payload: bytes, topic: Topic):
    """The C pass agrees with the typed path or refuses; returns what each gave."""
    c, typed = _c(payload, topic), _typed(payload, topic)
    if c is not None:
        assert c == typed, payload
    return c, typed


value = st.one_of(st.floats(-50, 400), st.integers(-5, 300), st.just(0.1), st.just(-0.0),
                  st.just(1e-320), st.just(1.7976931348623157e308))
name = st.sampled_from(["speed_kmh", "vehicle_count", "pm25_ugm3", "bogus", "occupancy_pct"])
reading = st.fixed_dictionaries(
    {"values": st.dictionaries(name, value, max_size=3)},
    optional={"ts": st.one_of(st.none(), st.integers(NOW - 40 * 86_400_000, NOW + 120_000)),
              "seq": st.one_of(st.none(), st.integers(-2, 2**63 + 2))})
gw_doc = st.dictionaries(st.sampled_from(["a1", "t2", "n1", "zz", "s1"]),
                         st.lists(reading, min_size=1, max_size=3), max_size=3)
# the spellings: orjson's compact form, the standard library's, indented, shuffled keys
spelling = st.sampled_from([
    orjson.dumps, lambda d: json.dumps(d).encode(),
    lambda d: json.dumps(d, indent="\t", sort_keys=True).encode(),
    lambda d: (" \r\n" + json.dumps(d, separators=(" ,\n", " : ")) + "\n ").encode()])


def _plain(doc) -> bool:
    """What the C pass must take: non-empty, integers of at most 18 digits."""
    items = doc if isinstance(doc, list) else [doc]
    if isinstance(doc, dict) and "values" not in doc:  # a gateway document
        items = [it for its in doc.values() for it in its] if doc else []
    return bool(items) and all(it.get("seq") is None or abs(it["seq"]) < 10**18 for it in items)


@needs_native
@settings(max_examples=400, deadline=None)
@given(doc=st.one_of(reading, st.lists(reading, max_size=3)), enc=spelling)
def test_telemetry_agrees_with_the_typed_path(doc, enc):
    c, typed = _check(enc(doc), T)
    if typed and _plain(doc):
        assert c is not None


@needs_native
@settings(max_examples=400, deadline=None)
@given(doc=gw_doc, enc=spelling)
def test_gateway_agrees_with_the_typed_path(doc, enc):
    c, typed = _check(enc(doc), G)
    if typed and _plain(doc):
        assert c is not None


GOOD_T = orjson.dumps([{"ts": NOW - 5, "seq": 7, "values": {"speed_kmh": 31.5}},
                       {"ts": None, "seq": None, "values": {"vehicle_count": 3}}])
GOOD_G = orjson.dumps({"a1": [{"ts": NOW, "seq": 1, "values": {"pm25_ugm3": 12.25}}],
                       "t2": [{"values": {"speed_kmh": 1e1, "vehicle_count": 0}}]})
NOISE = b'"{}[],:0123456789-+.eE \\\n\tu\x00\xff'


@needs_native
@settings(max_examples=1500, deadline=None)
@given(which=st.booleans(), edits=st.lists(
    st.tuples(st.sampled_from(["flip", "drop", "insert"]), st.floats(0, 1),
              st.integers(0, len(NOISE) - 1)), min_size=1, max_size=3))
def test_mutated_bytes_agree_or_refuse(which, edits):
    """No byte string makes the C pass return rows the typed path would not."""
    data = bytearray(GOOD_T if which else GOOD_G)
    for op, at, k in edits:
        i = min(int(at * len(data)), len(data) - 1)
        if op == "flip":
            data[i] = NOISE[k]
        elif op == "drop":
            del data[i]
        else:
            data.insert(i, NOISE[k])
    _check(bytes(data), T if which else G)


@needs_native
def test_well_formed_payloads_are_taken():
    c = _c(GOOD_T, T)
    assert c == _typed(GOOD_T, T) and len(c) == 2
    slot = fastdecode._ROW_LIMITS["traffic"]["vehicle_count"][0]
    assert c[1][0] == fastdecode.to_time(NOW) and c[1][2] is None and c[1][slot] == 3.0
    assert _c(GOOD_G, G) == _typed(GOOD_G, G) and len(_c(GOOD_G, G)) == 2


@needs_native
@pytest.mark.parametrize(("payload", "topic"), [
    (b'{"values": {"speed\\u005fkmh": 3}}', T),          # an escape
    (b'{"values": {"speed_kmh": 3, "speed_kmh": 4}}', T),  # a metric twice: msgspec keeps 4
    (b'{"values": {"speed_kmh": 3}, "unit": "x"}', T),     # a key msgspec ignores
    (b'{"values": {"speed_kmh": 3}, "ts": null, "ts": %d}' % NOW, T),
    (b'{"a1": [{"values": {"pm25_ugm3": 1}}], "a1": [{"values": {"pm25_ugm3": 2}}]}', G),
    (b'{"values": {"speed_kmh": 3}, "seq": 1234567890123456789}', T),  # 19 digits
    (b'[]', T), (b'{}', G), (b'{"a1": []}', G),
])
def test_left_to_the_typed_path(payload, topic):
    """Forms the C pass refuses are still stored: the typed path takes them."""
    assert _c(payload, topic) is None
    typed = _typed(payload, topic)
    assert typed is not None
    assert fastdecode.rows(payload, topic, NOW, None, REG, WINDOW, {}) == typed


@needs_native
@pytest.mark.parametrize("payload", [
    b'{"values": {"speed_kmh": 9999}}', b'{"values": {"speed_kmh": NaN}}',
    b'{"values": {"speed_kmh": 1e999}}', b'{"values": {"speed_kmh": 01}}',
    b'{"values": {"speed_kmh": 3}} x', b'{"values": {"speed_kmh": -}}',
    b'{"values": {"speed_kmh": 3.}}', b'{"values": {"speed_kmh": 3}, "seq": -1}',
    b'{"values": {"speed_kmh": 3}, "ts": 1.5}', b'{"values": {}}',
])
def test_not_storable_is_refused_by_both(payload):
    assert _c(payload, T) is None and _typed(payload, T) is None


@needs_native
def test_bad_arguments_raise_and_rows_falls_back():
    with pytest.raises(TypeError):
        NATIVE.rows(b"{}", None, None, NOW, REG, {}, 0, 1, {}, fastdecode.to_time, MAX_SLOTS,
                    None)
    times: dict = {}
    fastdecode.rows(GOOD_T, T, NOW, None, REG, WINDOW, times)
    assert set(times) == {NOW - 5, NOW}
