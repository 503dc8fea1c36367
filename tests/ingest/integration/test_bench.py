from bench.ingest import BenchSpec, quantile, run_bench


def test_quantile_interpolates_buckets():
    b = [(0.1, 50.0), (0.2, 100.0), (float("inf"), 100.0)]
    assert quantile(b, 0.5) == 0.1
    assert abs(quantile(b, 0.75) - 0.15) < 1e-9
    assert quantile([], 0.5) is None


def test_bench_ingest_small(pg, broker):
    r = run_bench(BenchSpec(sensors=40, rate=400, duration=3, per_message=4,
                            mqtt_url=broker.url, database_url=pg.url))
    for key in ("offered_per_s", "stored_per_s", "p50_latency_ms", "p99_latency_ms", "lost",
                "duplicates", "dead_letters", "collector_rss_mb"):
        assert key in r
    assert r["sent"] > 1000 and r["stored"] == r["sent"]
    assert r["lost"] == 0 and r["duplicates"] == 0 and r["dead_letters"] == 0
    assert r["internal_errors"] == 0 and r["collector_rss_mb"] > 10
    # measured and ordered; how fast is the bench's to print, not a test's to bound
    assert 0 < r["p50_latency_ms"] <= r["p99_latency_ms"] < float("inf")


def test_bench_ingest_http_push(pg, broker):
    """The http dialect: the same load POSTed to the real dashboards (gunicorn), all stored."""
    r = run_bench(BenchSpec(sensors=40, rate=400, duration=3, per_message=4,
                            mqtt_url=broker.url, database_url=pg.url, dialect="http"))
    assert r["dialect"] == "http" and r["failed_requests"] == 0
    assert r["sent"] > 500 and r["stored"] == r["sent"] and r["messages"] * 4 == r["sent"]
    assert r["lost"] == 0 and r["duplicates"] == 0 and r["dead_letters"] == 0
    assert 0 < r["p50_latency_ms"] <= r["p99_latency_ms"]
