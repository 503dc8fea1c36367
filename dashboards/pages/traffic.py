"""/traffic: slowest segments now, flow and speed of a segment, congestion by hour and ring, OD."""

from __future__ import annotations

from datetime import timedelta

import dash
from dash import Input, Output, dcc, html

from dashboards import data, figures
from dashboards.app import ctx, now

dash.register_page(__name__, path="/traffic", title="citypulse traffic")


def layout(**_query) -> html.Div:
    """Four figures; the segment picker drives the flow/speed chart."""
    segs = data.city_model()["segments"]
    options = [{"label": f"{s['name']} ({s['id']})", "value": s["id"]} for s in segs]
    return html.Div([
        html.Div([
            html.Div(dcc.Graph(id="tr-slowest"), className="col"),
            html.Div([dcc.Dropdown(id="tr-segment", options=options, placeholder="segment",
                                   style={"color": "#111"}),
                      dcc.Graph(id="tr-series")], className="col"),
        ], className="row"),
        html.Div([
            html.Div(dcc.Graph(id="tr-hours"), className="col"),
            html.Div(dcc.Graph(id="tr-od"), className="col"),
        ], className="row"),
        dcc.Interval(id="tr-tick", interval=10_000),
    ], className="page")


@dash.callback(Output("tr-slowest", "figure"), Output("tr-hours", "figure"),
               Output("tr-od", "figure"), Output("tr-segment", "value"),
               Input("tr-tick", "n_intervals"), Input("tr-segment", "value"))
def _refresh(_n, segment):
    t = now()
    names = {z["id"]: z["name"] for z in data.city_model()["zones"]}
    with ctx().pool.connection() as conn:
        worst = data.worst_segments(conn, t, n=12)
        hours = data.congestion_by_hour_ring(conn, t - timedelta(hours=24))
        od = data.od_flows(conn, t)
    pick = segment or (worst[0]["id"] if worst else dash.no_update)
    return (figures.slowest_segments(worst), figures.congestion_heatmap(hours),
            figures.od_matrix(od, names), pick)


@dash.callback(Output("tr-series", "figure"), Input("tr-segment", "value"),
               Input("tr-tick", "n_intervals"))
def _series(segment, _n):
    if not segment:
        return figures.empty("Flow and speed", "pick a segment")
    t = now()
    with ctx().pool.connection() as conn:
        series = data.segment_series(conn, segment, t - timedelta(hours=2), t)
    return figures.segment_flow_speed(series, segment)
