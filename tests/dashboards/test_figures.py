"""Figures and colour logic are pure functions: call them directly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dashboards import data, figures


def test_evidence_one_trace_per_metric():
    t = datetime(2026, 1, 1, tzinfo=UTC)
    fig = figures.evidence({"smoke_pct": [[t, 1.0], [t + timedelta(seconds=15), 9.0]],
                            "temperature_c": [[t, 20.0]]})
    assert [tr.name for tr in fig.data] == ["smoke_pct", "temperature_c"]
    assert list(fig.data[0].y) == [1.0, 9.0]


def test_empty_inputs_give_placeholders_not_errors():
    for fig in (figures.evidence({}), figures.slowest_segments([]),
                figures.congestion_heatmap([]), figures.od_matrix([], {}),
                figures.ingest_rate([]), figures.dead_letters([]),
                figures.segment_flow_speed([], "x")):
        assert not fig.data
        assert fig.layout.annotations


def test_slowest_segments_sorted_with_worst_on_top():
    rows = [{"id": "a", "name": "A", "congestion": 0.9, "speed_kmh": 5.0},
            {"id": "b", "name": "B", "congestion": 0.4, "speed_kmh": 30.0}]
    fig = figures.slowest_segments(rows)
    # plotly draws horizontal bars bottom-up: the worst is last
    assert list(fig.data[0].x) == [0.4, 0.9]
    assert fig.data[0].y[-1].startswith("A")


def test_od_matrix_sums_trips_into_cells():
    flows = [{"origin": "z1", "dest": "z2", "trips": 3}, {"origin": "z1", "dest": "z2",
                                                          "trips": 2},
             {"origin": "z2", "dest": "z1", "trips": 1}]
    fig = figures.od_matrix(flows, {"z1": "Port", "z2": "Park"})
    assert list(fig.data[0].x) == ["Port", "Park"]
    assert fig.data[0].z[0][1] == 5 and fig.data[0].z[1][0] == 1


def test_congestion_heatmap_places_hours_and_rings():
    fig = figures.congestion_heatmap([{"hour": 8, "ring": "ring 1", "congestion": 0.7},
                                      {"hour": 17, "ring": "ring 2", "congestion": 0.5}])
    z = fig.data[0].z
    assert z[0][8] == 0.7 and z[1][17] == 0.5 and z[0][0] is None


def test_band_index_follows_the_bands():
    bands = data.congestion_bands()
    assert data.band_index(None, bands) == -1
    assert data.band_index(float("nan"), bands) == -1
    assert data.band_index(0.0, bands) == 0
    assert data.band_index(1.0, bands) == len(bands) - 1
    assert [data.band_index(b.lo, bands) for b in bands] == list(range(len(bands)))


def test_density_colour_scale_is_monotonic_and_clamped():
    assert data.density_rgba(None) is None
    reds = [data.density_rgba(x)[0] for x in (0, 25, 50, 150, 400, 600, 5000)]
    assert reds[0] == data.density_rgba(-5)[0]
    assert data.density_rgba(600) == data.density_rgba(5000)
    assert all(len(data.density_rgba(x)) == 4 for x in (0, 100, 1e6))


def test_city_model_is_the_twins_model():
    model = data.city_model()
    assert len(model["lake"]) > 20
    assert model["segments"] and model["zones"]
    seg = model["segments"][0]
    assert {"id", "name", "ring", "lanes", "free_flow_kmh", "path"} <= set(seg)
    lon, lat = model["lake"][0]
    assert 121.8 < lon < 122.1 and 30.8 < lat < 31.0


METRICS = """# TYPE citypulse_ingest_messages counter
citypulse_ingest_messages_total{kind="gateway"} 100.0
citypulse_ingest_messages_total{kind="single"} 50.0
# TYPE citypulse_ingest_readings_stored counter
citypulse_ingest_readings_stored_total 5000.0
# TYPE citypulse_ingest_lag_seconds histogram
citypulse_ingest_lag_seconds_sum 3.0
citypulse_ingest_lag_seconds_count 4.0
"""


def test_collector_metrics_parse_and_rates():
    m = data.parse_metrics(METRICS)
    assert m["citypulse_ingest_messages"] == 150
    assert m["citypulse_ingest_readings_stored"] == 5000
    assert m["lag_mean_s"] == 0.75
    later = dict(m, citypulse_ingest_messages=450.0)
    r = data.rates((10.0, m), (12.0, later))
    assert r["citypulse_ingest_messages"] == 150 and r["citypulse_ingest_readings_stored"] == 0
    assert data.rates(None, (1.0, m)) == {}


def test_bands_come_from_analytics_rules():
    import analytics

    want = analytics.ui_thresholds()["congestion_bands"]
    assert [b.lo for b in data.congestion_bands()] == [float(lo) for lo, _hi, _l in want]


def test_severity_colours_come_from_analytics_not_css():
    import re

    import analytics
    from dashboards.app import ASSETS

    colours = analytics.ui_thresholds()["severity_colours"]
    css = data.severity_css()
    for sev, (r, g, b) in colours.items():
        assert f"--sev-{sev}: rgb({r}, {g}, {b});" in css
        assert data.severity_rgb(sev) == (r, g, b)
    # the stylesheet colours severities only through those variables
    sheet = (ASSETS / "10_citypulse.css").read_text()
    rules = re.findall(r"([^{}]*\b(?:critical|warning|info)\b[^{}]*)\{([^}]*)\}", sheet)
    assert len(rules) >= 6
    for _selector, body in rules:
        assert "var(--sev-" in body and not re.search(r"#[0-9a-fA-F]{3,8}\b|rgb\(", body)


def _many(n: int, step_s: int = 60, start: datetime | None = None) -> list[datetime]:
    start = start or datetime(2026, 1, 1, 21, 33, tzinfo=UTC)
    return [start + timedelta(seconds=i * step_s) for i in range(n)]


def _time_charts(times: list[datetime]) -> list:
    return [figures.segment_flow_speed([{"t": t, "vehicles": 10 + i, "speed": 40.0}
                                        for i, t in enumerate(times)], "ring-1"),
            figures.ingest_rate([{"t": t, "n": 100 + i} for i, t in enumerate(times)]),
            figures.evidence({"speed_kmh": [[t, 30.0] for t in times]})]


def test_time_charts_with_one_point_get_a_readable_window():
    t0 = datetime(2026, 1, 1, 21, 33, tzinfo=UTC)
    for fig in _time_charts([t0]):
        lo, hi = (datetime.fromisoformat(str(x)) for x in fig.layout.xaxis.range)
        assert (hi - lo).total_seconds() >= 10, fig.layout.title.text  # not tenths of a ms
        assert lo < t0 < hi
        assert fig.layout.xaxis.title.text == "time (Shanghai)"


def test_time_charts_in_local_time_with_units_on_every_axis():
    times = _many(30)
    for fig in _time_charts(times):
        assert fig.layout.xaxis.tickformat == "%H:%M"
        assert fig.layout.yaxis.title.text, fig.layout.title.text
        first = [x for x in fig.data[0].x if x is not None][0]
        assert first.utcoffset() == timedelta(hours=8)  # 21:33 UTC drawn as 05:33 Shanghai
        assert first.hour == 5
        assert fig.layout.xaxis.range is None  # many points: plotly picks the ticks
    flow = _time_charts(times)[0]
    assert flow.layout.yaxis.title.text == "vehicles/min"
    assert flow.layout.yaxis2.title.text == "speed (km/h)"
    assert figures.dead_letters([{"reason": "bad json", "count": 3}]).layout.yaxis.title.text


def test_a_gap_breaks_the_line():
    times = _many(5) + _many(5, start=datetime(2026, 1, 1, 23, 0, tzinfo=UTC))
    flow, rate, ev = _time_charts(times)
    speed = flow.data[1]
    assert list(speed.y).count(None) == 1 and speed.y[5] is None
    assert None in list(ev.data[0].y)
    assert None not in list(figures.evidence({"x": [[t, 1.0] for t in _many(5)]}).data[0].y)
