"""Plumbing of ``citypulse bench ingest --baseline``: the wire feeder, the bare pipeline, ratios."""

from bench.ingest import BenchSpec
from bench.ingest_compare import run_compare
from bench.wirefeed import _Acks, varint

COMPONENTS = ("generator", "broker", "collector", "database")


def test_varint_and_puback_stream_split_anywhere():
    assert varint(0) == b"\x00" and varint(127) == b"\x7f" and varint(128) == b"\x80\x01"
    assert varint(16_384) == b"\x80\x80\x01"
    stream = b"\x40\x02\x00\x01" + b"\x40\x03\x00\x02\x10" + b"\x40\x04\x00\x03\x87\x00"
    for cut in range(len(stream) + 1):
        a = _Acks()
        a.feed(stream[:cut])
        a.feed(stream[cut:])
        assert (a.acked, a.failed, a.buf) == (3, 1, b"")


def test_baseline_runs_both_pipelines_on_both_shapes(pg, broker):
    spec = BenchSpec(sensors=20, rate=300, duration=2, mqtt_url=broker.url, database_url=pg.url,
                     encoding="msgpack")
    out = run_compare(spec, [5, 1], baseline=True)
    assert [r["per_message"] for r in out["runs"]] == [5, 1]
    for run in out["runs"]:
        ours, bare = run["citypulse"], run["bare"]
        for r in (ours, bare):
            assert r["sent"] == 600 and r["stored"] == r["sent"]
            assert r["lost"] == 0 and r["duplicates"] == 0
            assert r["messages"] == 600 // run["per_message"]
            assert set(r["cpu_us_per_reading"]) == set(COMPONENTS)
            assert r["cpu_us_per_reading"]["broker"] is not None  # found by its port
            assert r["cpu_us_per_reading"]["database"] is not None
        assert ours["dead_letters"] == 0 and bare["decode_errors"] == 0
        assert set(run["ratio"]) == {"stored_per_s"} | {f"cpu_{k}" for k in COMPONENTS}
        assert run["ratio"]["stored_per_s"] > 0


def test_with_private_servers_each_run_starts_on_a_new_database():
    """Runs after the first neither write into earlier runs' tables nor meet their backlog
    or their dirty pages; in a second round the order is reversed."""
    spec = BenchSpec(sensors=10, rate=200, duration=1)
    out = run_compare(spec, [5], baseline=True, before=".", rounds=2)
    run = out["runs"][0]
    assert [r["order"] for r in run["rounds"]] == [["before", "citypulse", "bare"],
                                                  ["bare", "citypulse", "before"]]
    runs = [r[k] for r in run["rounds"] for k in ("before", "citypulse", "bare")]
    names = [r["database"] for r in runs]
    assert len(set(names)) == 6 and all(n.startswith("cpbench") for n in names)
    assert [r["earlier_databases"] for r in runs] == [0] * 6
    # and no autovacuum wakes at random in one run and not the next
    assert [(r["autovacuum"], r["autovacuum_runs"]) for r in runs] == [("off", 0)] * 6
    for r in runs:
        assert r["stored"] == r["sent"] == 200 and r["lost"] == 0
    for key in ("ratio", "ratio_before"):  # the median of the two rounds' ratios
        assert run["median"][key]["stored_per_s"] is not None
        for k, v in run["median"][key].items():
            pair = sorted(r[key][k] for r in run["rounds"] if r[key][k] is not None)
            if v is not None:  # a CPU share too small for a clock tick has no ratio
                assert pair[0] - 0.01 <= v <= pair[-1] + 0.01, (key, k)
