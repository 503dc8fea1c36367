from __future__ import annotations

from datetime import datetime

import numpy as np

from citypulse.catalogue import KINDS
from citypulse.wire import payload, topics
from device_sim.behaviour import KIND_NAMES, Faults, due, readings
from device_sim.encode import encode_batch
from device_sim.worker import partition

T0 = datetime.fromisoformat("2026-11-23T08:00:00+08:00").timestamp()


def decode_all(msgs, prefix="city"):
    out, rej = [], []
    for topic, data, _n in msgs:
        d = payload.decode(data, topics.parse(topic, prefix), 0)
        out.extend(d.readings)
        rej.extend(d.rejected)
    return out, rej


def test_messages_decode_to_the_batch(fleet):
    idx, k, t = due(fleet, T0, T0 + 60)
    batch = readings(fleet, idx, k, t)
    for gateway in (True, False):
        msgs = encode_batch(fleet, batch, "city", gateway)
        got, rej = decode_all(msgs)
        assert rej == [] and len(got) == len(batch) == sum(n for _, _, n in msgs)
        by = {(r.sensor_id, r.seq): r for r in got}
        kinds = dict(zip(fleet.sensor_id.tolist(), fleet.kind.tolist(), strict=True))
        for i, s, ts in zip(batch.idx.tolist(), batch.seq.tolist(), batch.ts_ms.tolist(),
                            strict=True):
            r = by[(fleet.sensor_id[i], s)]
            assert r.ts_ms == ts
            kind = KINDS[KIND_NAMES[kinds[r.sensor_id]]]
            for name, v in r.values:
                m = kind.metric(name)
                assert m is not None and m.in_range(v), (r, name)
        gw_topics = [tp for tp, _, _ in msgs if "/gateway/" in tp]
        assert bool(gw_topics) == gateway


def test_injected_bad_messages_are_rejectable(fleet):
    idx, k, t = due(fleet, T0, T0 + 300)
    batch = readings(fleet, idx, k, t, faults=Faults(bad=0.1))
    got, rej = decode_all(encode_batch(fleet, batch, "city", True))
    out_of_range = 0
    unknown = 0
    sid_kind = dict(zip(fleet.sensor_id.tolist(), fleet.kind.tolist(), strict=True))
    for r in got:
        kind = KINDS[KIND_NAMES[sid_kind[r.sensor_id]]]
        for name, v in r.values:
            m = kind.metric(name)
            if m is None:
                unknown += 1
            elif not m.in_range(v):
                out_of_range += 1
    n_bad = int((batch.bad > 0).sum())
    assert n_bad > 50
    assert rej and out_of_range and unknown
    assert len(rej) + out_of_range + unknown >= 0.9 * n_bad


def test_partition_keeps_gateways_together(fleet):
    parts = partition(fleet, 3, True)
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(fleet)))
    owner = {}
    for w, p in enumerate(parts):
        for g in fleet.gateway_id[p].tolist():
            if g is not None:
                assert owner.setdefault(g, w) == w


def test_fast_encoder_sends_what_the_reference_sends(fleet):
    from device_sim.encode import encode_batch_reference

    idx, k, t = due(fleet, T0, T0 + 120)
    batch = readings(fleet, idx, k, t, faults=Faults(bad=0.02))
    for gateway in (True, False):
        fast = encode_batch(fleet, batch, "city", gateway)
        ref = encode_batch_reference(fleet, batch, "city", gateway)
        assert [(tp, n) for tp, _, n in fast] == [(tp, n) for tp, _, n in ref]
        for (tp, a, _), (_, b, _) in zip(fast, ref, strict=True):
            da = payload.decode(a, topics.parse(tp, "city"), 0)
            db = payload.decode(b, topics.parse(tp, "city"), 0)
            assert da.readings == db.readings
            assert [r.reason for r in da.rejected] == [r.reason for r in db.rejected]


def test_simulated_clock_never_runs_ahead_of_the_wall(tmp_path):
    import time as _time

    from device_sim.run import RunConfig, _sim_start

    cfg = RunConfig(deployment=tmp_path / "x.parquet", mqtt_url="mqtt://127.0.0.1:1",
                    speedup=60, duration=10)
    start = _sim_start(cfg, None)
    # the run covers 600 simulated seconds and must end no later than the wall clock does
    assert start + 600 <= _time.time() + 10 + 1
    assert _sim_start(RunConfig(deployment=tmp_path, mqtt_url="mqtt://x:1", start=5.0), None) == 5


def test_rate_factor_scales_the_schedule(deployment):
    from device_sim.behaviour import Fleet

    base = Fleet.build(deployment, 5, with_routes=False)
    fast = Fleet.build(deployment, 5, rate_factor=base.nominal_rate and 10_000 /
                       base.nominal_rate, with_routes=False)
    assert abs(fast.nominal_rate - 10_000) < 1
    idx, _, _ = due(fast, T0, T0 + 10)
    assert abs(len(idx) - 100_000) < 0.02 * 100_000
