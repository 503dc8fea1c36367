"""The internal committed-batch message (citypulse.wire.committed) and its topic."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from citypulse.wire import committed as wc
from citypulse.wire import topics as wt

T = datetime(2026, 12, 1, 7, 30, 15, 123456, tzinfo=UTC)


def test_round_trip_keeps_time_sensor_and_slots():
    rows = ((T, 7, 3, 1.5, None, 3.0, None, None, None, None, None),
            (T, 8, None, None, None, None, None, None, None, None, 9.0),
            (T, 9, None))
    assert wc.decode(wc.encode(rows)) == [
        wc.Reading(T, 7, (1.5, None, 3.0) + (None,) * 5),
        wc.Reading(T, 8, (None,) * 7 + (9.0,)),
        wc.Reading(T, 9, ())]


@pytest.mark.parametrize("doc, error", [
    (b"\xc1", "not msgpack"),
    (wc._encoder.encode({"v": 1}), "expected [1, [rows]]"),
    (wc._encoder.encode([2, []]), "expected [1, [rows]]"),
    (wc._encoder.encode([1, [[T, "s1", None, 2.0]]]), "row 0"),
    (wc._encoder.encode([1, [[T, 2, None, "x"]]]), "row 0"),
    (wc._encoder.encode([1, [[T, 2, None] + [0.0] * 9]]), "row 0"),
    (wc._encoder.encode([1, [[T.timestamp(), 2, None, 1.0]]]), "row 0"),
    (wc._encoder.encode([1, [[T.replace(tzinfo=None), 2, None, 1.0]]]), "row 0"),
])
def test_anything_else_is_a_format_error(doc, error):
    with pytest.raises(wc.FormatError, match=error.replace("[", r"\[")):
        wc.decode(doc)


def test_topics():
    assert wt.committed("city") == "city/v1/committed"
    assert wt.parse(wt.committed("city")).kind == wt.UNKNOWN  # never taken for telemetry
    assert wt.sta_datastream_observations(42) == "v1.1/Datastreams(42)/Observations"
    assert wt.sta_observations() == "v1.1/Observations"
    assert wt.sta_all() == "v1.1/#"
