"""/replay: a time slider over the stored history; the map shows the twin's state then."""

from __future__ import annotations

from datetime import timedelta

import dash
from dash import ClientsideFunction, Input, Output, State, clientside_callback, dcc, html

from dashboards import data
from dashboards.app import ctx

dash.register_page(__name__, path="/replay", title="citypulse replay")

TICK_MS = 1000
SPEEDS = (1, 5, 10, 30, 60)


def layout(**_query) -> html.Div:
    """Slider (seconds since the first stored reading), play/pause and speed."""
    with ctx().pool.connection() as conn:
        rng = data.history_range(conn)
    if rng is None:
        return html.Div(html.P("No stored history yet."), className="page")
    first, last = rng
    span = max(60, int((last - first).total_seconds()))
    marks = {int(span * f): (first + timedelta(seconds=span * f)).astimezone(
        data.LOCAL_TZ).strftime("%H:%M") for f in (0, 0.25, 0.5, 0.75, 1)}
    return html.Div([
        html.Div([
            html.Button("Play", id="rp-play"),
            dcc.Dropdown(id="rp-speed", options=[{"label": f"{s}x", "value": s}
                                                 for s in SPEEDS],
                         value=10, clearable=False, style={"width": "6rem", "color": "#111"}),
            html.Span(id="rp-time", style={"fontSize": "1.6rem", "marginLeft": "1rem"}),
        ], style={"display": "flex", "alignItems": "center", "gap": ".6rem"}),
        html.Div(dcc.Slider(id="rp-slider", min=0, max=span, step=1, value=span, marks=marks,
                            updatemode="mouseup"), className="slider-wrap",
                 style={"margin": "1rem 0"}),
        html.Div(id="rp-map", className="map"),
        dcc.Store(id="rp-first", data=first.isoformat()), dcc.Store(id="rp-state"),
        dcc.Interval(id="rp-tick", interval=TICK_MS, disabled=True),
        html.Div(id="rp-sink", style={"display": "none"}),
    ], className="page")


@dash.callback(Output("rp-tick", "disabled"), Output("rp-play", "children"),
               Input("rp-play", "n_clicks"), prevent_initial_call=True)
def _play(n):
    playing = bool(n) and n % 2 == 1
    return not playing, "Pause" if playing else "Play"


@dash.callback(Output("rp-slider", "value"), Input("rp-tick", "n_intervals"),
               State("rp-slider", "value"), State("rp-slider", "max"),
               State("rp-speed", "value"), prevent_initial_call=True)
def _advance(_n, value, top, speed):
    nxt = (value or 0) + (speed or 1) * TICK_MS / 1000
    return 0 if nxt > top else nxt


@dash.callback(Output("rp-state", "data"), Output("rp-time", "children"),
               Input("rp-slider", "value"), State("rp-first", "data"))
def _state(value, first):
    from datetime import datetime

    at = datetime.fromisoformat(first) + timedelta(seconds=value or 0)
    with ctx().pool.connection() as conn:
        state = data.map_state(conn, at, with_offline=False)
    return state, at.astimezone(data.LOCAL_TZ).strftime("%Y-%m-%d %H:%M:%S")


clientside_callback(ClientsideFunction("citypulse", "render"), Output("rp-sink", "children"),
                    Input("rp-state", "data"), State("rp-map", "id"))
