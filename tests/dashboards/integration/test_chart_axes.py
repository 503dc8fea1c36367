"""Every time chart drawn by plotly.js in Chromium with zero, one and many points and a gap:
readable, distinct, increasing tick labels (no degenerate axis) and a unit on every axis."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from dashboards import figures

pytestmark = pytest.mark.browser

T0 = datetime(2026, 1, 1, 21, 33, tzinfo=UTC)
LABEL = re.compile(r"^\d{2}:\d{2}(:\d{2})?$")


def _times(n: int, step_s: int, start: datetime = T0) -> list[datetime]:
    return [start + timedelta(seconds=i * step_s) for i in range(n)]


def _charts(times: list[datetime]) -> dict:
    return {"flow": figures.segment_flow_speed(
                [{"t": t, "vehicles": 10 + i % 3, "speed": 40.0} for i, t in enumerate(times)],
                "ring-1"),
            "rate": figures.ingest_rate([{"t": t, "n": 100 + i} for i, t in enumerate(times)]),
            "evidence": figures.evidence({"speed_kmh": [[t, 30.0] for t in times]})}


CASES = {"zero": [], "one": [T0], "many-minutes": _times(30, 60),
         "many-seconds": _times(40, 1), "gap": _times(5, 60) + _times(5, 60, T0 + timedelta(hours=1))}


def _draw(page, fig) -> dict:
    page.set_content(fig.to_html(include_plotlyjs=True, full_html=True))
    page.wait_for_selector(".main-svg")
    return page.evaluate("""() => ({
        x: Array.from(document.querySelectorAll('.xtick text')).map(e => e.textContent),
        ytitles: Array.from(document.querySelectorAll('.g-ytitle text, .g-y2title text'))
                   .map(e => e.textContent),
        xtitle: Array.from(document.querySelectorAll('.g-xtitle text')).map(e => e.textContent),
        notes: Array.from(document.querySelectorAll('.annotation-text')).map(e => e.textContent)
    })""")


@pytest.mark.parametrize("case", sorted(CASES))
def test_time_charts_render_a_readable_axis(page, case):
    for name, fig in _charts(CASES[case]).items():
        got = _draw(page, fig)
        if case == "zero":
            assert got["notes"] and not got["x"], (name, got)  # says why it is empty
            continue
        labels = got["x"]
        assert len(labels) >= 2, (case, name, labels)
        assert all(LABEL.match(x) for x in labels), (case, name, labels)
        assert len(set(labels)) == len(labels), (case, name, labels)  # none repeated
        assert labels == sorted(labels), (case, name, labels)
        assert got["xtitle"] == ["time (Shanghai)"], (case, name, got)
        assert got["ytitles"] and all(got["ytitles"]), (case, name, got)  # units on y
        if case == "gap":  # both sides of the hour-long gap are on the axis
            assert labels[0] < "06:00" < labels[-1] and len(labels) >= 4, labels
    assert not page.log.errors, page.log.errors
