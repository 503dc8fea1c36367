"""Simulator dialects decode, through each source adapter, to the readings the native form carries."""

from __future__ import annotations

from datetime import datetime

import pytest

from device_sim.behaviour import Faults, due, readings
from device_sim.dialects import HTTP_TOPIC, translate
from device_sim.encode import encode_batch
from ingest import sources
from ingest.sources import mapping as mp
from tests.device_sim.test_encode import decode_all

T0 = datetime.fromisoformat("2026-11-23T08:00:00+08:00").timestamp()


@pytest.mark.parametrize("dialect", ["thingsboard", "chirpstack", "ttn", "http"])
def test_dialect_carries_the_same_readings(fleet, dialect):
    idx, k, t = due(fleet, T0, T0 + 30)
    batch = readings(fleet, idx, k, t)
    native = encode_batch(fleet, batch, "city", True)
    want, _ = decode_all(native)
    src = sources.get(dialect)
    m = mp.load(dialect)
    got, rej = [], []
    msgs = translate(dialect, native, "city")
    assert sum(n for _, _, n in msgs) == len(want)
    for topic, data, _n in msgs:
        if dialect == "http":
            assert topic == HTTP_TOPIC
            f = src.decode_body(data, "application/json", None, 0, m, 1 << 24)
        else:
            assert src.claims(topic), topic
            f = src.decode(topic, data, 0, m, 1 << 24)
        got.extend(f.readings)
        rej.extend(f.rejected)
    assert rej == []
    strip = {"rssi_dbm"} if dialect in ("chirpstack", "ttn") else set()
    norm = lambda rs, drop: sorted(  # noqa: E731
        (r.sensor_id, r.seq, r.ts_ms, tuple(sorted(v for v in r.values if v[0] not in drop)))
        for r in rs)
    assert norm(got, strip) == norm(want, strip)


def test_garbled_payloads_reach_the_adapter_as_malformed(fleet):
    idx, k, t = due(fleet, T0, T0 + 30)
    batch = readings(fleet, idx, k, t, faults=Faults(bad=0.5))
    native = encode_batch(fleet, batch, "city", False)
    msgs = translate("chirpstack", native, "city")
    src, m = sources.get("chirpstack"), mp.load("chirpstack")
    reasons = set()
    for topic, data, _n in msgs:
        reasons |= {r.reason for r in src.decode(topic, data, 0, m, 1 << 20).rejected}
    assert "malformed" in reasons
