"""``citypulse bench commands`` end to end, small: every process real, figures present."""

import pytest

from bench.commands import run


@pytest.mark.slow
@pytest.mark.parametrize("via", ["native", "thingsboard"])
def test_bench_commands_small(via):
    r = run(singles=3, fleet=10, sensors=300, rate=600.0, per_message=10, warmup_s=1.0, via=via)
    assert r["via"] == via and r["succeeded"] == 3
    assert 0 < r["latency_ms"]["p50"] <= r["latency_ms"]["p95"] <= r["latency_ms"]["max"]
    assert r["fleet"]["succeeded"] == 10
    assert 0 < r["fleet"]["all_sent_s"] <= r["fleet"]["all_succeeded_s"]
    load = r["sensor_load"]
    assert load["sensors"] == 300 and load["stored_per_s_while_commanding"] > 0
    assert load["collector_lag_ms"]["p50"] is not None
