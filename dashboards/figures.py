"""Plotly figures of the dashboards, as pure functions of plain data.

In: lists/dicts from :mod:`dashboards.data`.  Out: ``plotly.graph_objects.Figure`` s in the
dashboards' dark theme.  No I/O, so unit tests call them directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import plotly.graph_objects as go

from dashboards.data import LOCAL_TZ

BG = "#0b1220"
FG = "#e6edf3"
ACCENT = "#4cc9f0"


def _layout(fig: go.Figure, title: str, height: int = 300) -> go.Figure:
    fig.update_layout(title={"text": title, "font": {"size": 16}}, template="plotly_dark",
                      paper_bgcolor=BG, plot_bgcolor=BG, font={"color": FG}, height=height,
                      margin={"l": 50, "r": 20, "t": 40, "b": 40}, showlegend=True)
    return fig


def local_times(times: Sequence) -> list:
    """Times in the city's local zone (plotly draws a datetime's wall time, not its zone)."""
    return [t.astimezone(LOCAL_TZ) if isinstance(t, datetime) and t.tzinfo else t for t in times]


def with_gaps(times: Sequence, values: Sequence, step_s: float) -> tuple[list, list]:
    """Break a line where readings are missing for more than two steps.

    A None is inserted one step after the last point before the gap, so plotly draws no
    straight line across the hole.
    """
    xs, ys = [], []
    for i, (t, v) in enumerate(zip(times, values, strict=True)):
        if i and isinstance(t, datetime) and (t - times[i - 1]).total_seconds() > 2 * step_s:
            xs.append(times[i - 1] + timedelta(seconds=step_s))
            ys.append(None)
        xs.append(t)
        ys.append(v)
    return xs, ys


def time_axis(fig: go.Figure, times: Sequence, step_s: float) -> go.Figure:
    """Local-time x axis with minute ticks (and seconds on a span under five minutes).

    One point (or one instant) gets a window of ten steps around it instead of an axis
    spanning a millisecond.
    """
    distinct = sorted(t for t in set(times) if isinstance(t, datetime))
    span = (distinct[-1] - distinct[0]).total_seconds() if distinct else 0.0
    if len(distinct) == 1:
        pad = timedelta(seconds=5 * step_s)
        fig.update_xaxes(range=[distinct[0] - pad, distinct[0] + pad])
        span = 10 * step_s
    # minute labels repeat on a span of a few minutes: then seconds too
    fig.update_xaxes(title="time (Shanghai)", tickformat="%H:%M" if span >= 300 else "%H:%M:%S",
                     hoverformat="%H:%M:%S", type="date")
    return fig


def empty(title: str, message: str = "no data yet") -> go.Figure:
    """A placeholder figure that says why it is empty."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, font={"size": 16, "color": "#8b949e"})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, title)


def evidence(series: dict[str, Sequence]) -> go.Figure:
    """The readings behind an alert: one line per metric ([[time, value], ...])."""
    if not any(series.values()):  # no metric, or metrics without a point
        return empty("Evidence", "no readings behind this alert")
    fig = go.Figure()
    times = []
    for metric, points in sorted(series.items()):
        xs, ys = with_gaps(local_times([p[0] for p in points]), [p[1] for p in points], 60)
        times += [x for x, y in zip(xs, ys, strict=True) if y is not None]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=metric))
    fig.update_yaxes(title="reading (unit of each metric, see legend)")
    return time_axis(_layout(fig, "Evidence: readings behind the alert"), times, 15)


def slowest_segments(rows: Sequence[dict]) -> go.Figure:
    """Horizontal bars of the most congested segments ([{name, congestion, speed_kmh}])."""
    if not rows:
        return empty("Slowest segments")
    rows = list(rows)[::-1]
    fig = go.Figure(go.Bar(
        x=[r["congestion"] for r in rows], y=[f"{r['name']} ({r['id']})" for r in rows],
        orientation="h", marker={"color": [r["congestion"] for r in rows],
                                 "colorscale": "RdYlGn_r", "cmin": 0, "cmax": 1},
        text=[f"{r['speed_kmh']:.0f} km/h" if r.get("speed_kmh") is not None else ""
              for r in rows], textposition="inside", textfont={"color": "#0b1220"}))
    fig.update_xaxes(range=[0, 1], title="congestion index (0 free flow, 1 standstill)")
    return _layout(fig, "Slowest segments now", height=360).update_layout(showlegend=False)


def segment_flow_speed(series: Sequence[dict], segment: str) -> go.Figure:
    """Flow (vehicles/min, bars) and mean speed (line, right axis) of one segment."""
    if not series:
        return empty(f"Flow and speed: {segment}")
    fig = go.Figure()
    times = local_times([r["t"] for r in series])
    fig.add_trace(go.Bar(x=times, y=[r["vehicles"] for r in series],
                         name="vehicles/min", marker={"color": "#3a86ff"}))
    xs, ys = with_gaps(times, [r["speed"] for r in series], 60)
    fig.add_trace(go.Scatter(x=xs, y=ys, name="speed km/h", yaxis="y2", mode="lines+markers",
                             line={"color": "#ffbe0b"}))
    fig.update_layout(yaxis={"title": "vehicles/min", "rangemode": "tozero"},
                      yaxis2={"overlaying": "y", "side": "right", "title": "speed (km/h)",
                              "rangemode": "tozero"})
    return time_axis(_layout(fig, f"Flow and speed: {segment}"), times, 60)


def congestion_heatmap(rows: Sequence[dict]) -> go.Figure:
    """Mean congestion by hour of day (x) and ring (y)."""
    if not rows:
        return empty("Congestion by hour and ring")
    rings = sorted({r["ring"] for r in rows})
    hours = list(range(24))
    z = [[None] * 24 for _ in rings]
    for r in rows:
        z[rings.index(r["ring"])][r["hour"]] = r["congestion"]
    fig = go.Figure(go.Heatmap(z=z, x=hours, y=rings, colorscale="RdYlGn_r", zmin=0, zmax=1,
                               colorbar={"title": "congestion"}))
    fig.update_xaxes(title="hour of day (Shanghai)")
    fig.update_yaxes(title="ring road")
    return _layout(fig, "Congestion by hour and ring")


def od_matrix(flows: Sequence[dict], zone_names: dict[str, str]) -> go.Figure:
    """Logistics origin-destination matrix ([{origin, dest, trips}])."""
    if not flows:
        return empty("Logistics OD matrix")
    zones = sorted({f["origin"] for f in flows} | {f["dest"] for f in flows})
    z = [[0.0] * len(zones) for _ in zones]
    for f in flows:
        z[zones.index(f["origin"])][zones.index(f["dest"])] += f["trips"]
    labels = [zone_names.get(k, k) for k in zones]
    fig = go.Figure(go.Heatmap(z=z, x=labels, y=labels, colorscale="Viridis",
                               colorbar={"title": "trips"}))
    fig.update_xaxes(title="destination")
    fig.update_yaxes(title="origin")
    return _layout(fig, "Logistics OD matrix", height=420)


def ingest_rate(rate: Sequence[dict]) -> go.Figure:
    """Readings stored per second ([{t, n}])."""
    if not rate:
        return empty("Readings per second")
    times = local_times([r["t"] for r in rate])
    xs, ys = with_gaps(times, [r["n"] for r in rate], 1)
    fig = go.Figure(go.Scatter(x=xs, y=ys, mode="lines+markers" if len(xs) < 3 else "lines",
                               fill="tozeroy", line={"color": ACCENT}, name="readings/s"))
    fig.update_yaxes(title="readings/s", rangemode="tozero")
    return time_axis(_layout(fig, "Readings stored per second"), times, 1)


def dead_letters(rows: Sequence[dict]) -> go.Figure:
    """Dead letters by reason ([{reason, count}])."""
    if not rows:
        return empty("Dead letters by reason", "no dead letters")
    fig = go.Figure(go.Bar(x=[r["reason"] for r in rows], y=[r["count"] for r in rows],
                           marker={"color": "#ef476f"}, name="dead letters"))
    fig.update_xaxes(title="reason")
    fig.update_yaxes(title="dead letters (count)", rangemode="tozero")
    return _layout(fig, "Dead letters by reason")
