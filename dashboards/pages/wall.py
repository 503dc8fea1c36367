"""/wall: the operations-centre wall, full screen, no clicks; refreshes every few seconds."""

from __future__ import annotations

import time

import dash
from dash import ClientsideFunction, Input, Output, State, clientside_callback, dcc, html

from analytics import maintenance
from dashboards import data
from dashboards.app import ctx, now, tile

dash.register_page(__name__, path="/wall", title="citypulse wall")

REFRESH_MS = 3000


def layout(**_query) -> html.Div:
    """The wall: KPI tiles, the city map, worst segments and the alert ticker."""
    bands = data.congestion_bands()
    legend = html.Div([html.B("Traffic")] + [
        html.Span([html.Span(className="sw", style={"background": f"rgb{b.rgb}"}), b.label])
        for b in bands] + [html.Br(), html.B("People/ha"), html.Span(
            className="sw", style={"background": "linear-gradient(90deg,#1b2a4a,#7b2cbf,#f72585)"}),
            html.Span("low to high"),
            html.Span(className="sw", style={"background": "#3c3c3c",
                                             "border": "1px solid #ff5050"}), "offline sensor",
            html.Span(className="sw", style={"background": "#ffbe0b"}), "logistics flow",
            html.Br(), html.B("Alerts")] + [
        html.Span([html.Span(className="sw", style={"background": f"var(--sev-{sev})"}), sev])
        for sev in data.SEVERITIES],
        className="legend")
    return html.Div([
        html.Div(id="wall-clock", className="clock"),
        html.H1("Dishui Lake city: operations"),
        html.Div(id="wall-tiles", className="tiles"),
        html.Div([
            html.Div([html.Div(id="wall-map", className="map"), legend],
                     style={"position": "relative", "flex": "4 1 0"}),
            html.Div(id="wall-worst", className="worst tile", style={"flex": "1 1 0"}),
        ], className="row", style={"flexWrap": "nowrap"}),
        html.Div(id="wall-ticker", className="ticker"),
        dcc.Interval(id="wall-tick", interval=REFRESH_MS),
        dcc.Store(id="wall-state"),
        html.Div(id="wall-sink", style={"display": "none"}),
    ], className="page wall")


def refresh() -> tuple:
    """The wall's refresh: map state, tiles, worst segments, ticker, clock."""
    t0 = time.perf_counter()
    at = now()
    with ctx().pool.connection() as conn:
        segs = data.segment_state(conn, at)
        alerts = data.list_alerts(conn, open_only=True)
        state = data.map_state(conn, at, segs=segs, alerts=alerts)
        k = data.kpis(conn, at, alerts=alerts)
        worst = data.worst_segments(conn, at, n=12, state=segs)
        alerts = maintenance.split(alerts)[0][:30]  # the wall shows city incidents only
    tiles = [tile("readings / s", f"{k['readings_per_s']:,.0f}"),
             tile("sensors online", f"{k['sensors_online']:,}",
                  f"of {k['sensors_total']:,}")]
    tiles += [tile(f"{sev} alerts", str(k["alerts"].get(sev, 0)), "open", sev)
              for sev in data.SEVERITIES]
    worst_div = [html.Div("Worst segments", className="label")] + [
        html.Div([html.B(f"{w['congestion']:.0%} "), f"{w['name']}",
                  html.Span(f" {w['speed_kmh']:.0f} km/h" if w.get("speed_kmh") else "",
                            className="sub")]) for w in worst]
    items = [html.Span([html.Span(a["severity"], className=f"sev {a['severity']}"), " ",
                        a["title"] or a["rule"], f" · {a['zone_id']} · since ",
                        a["started_at"].astimezone(data.LOCAL_TZ).strftime("%H:%M")],
                       className="item") for a in alerts]
    ticker = html.Div(items or [html.Span("No open alerts", className="item")],
                      className="track")
    ctx().timed("wall_refresh", time.perf_counter() - t0)
    return (state, tiles, worst_div, ticker,
            at.astimezone(data.LOCAL_TZ).strftime("%Y-%m-%d %H:%M:%S"))


@dash.callback(Output("wall-state", "data"), Output("wall-tiles", "children"),
               Output("wall-worst", "children"), Output("wall-ticker", "children"),
               Output("wall-clock", "children"), Input("wall-tick", "n_intervals"))
def _refresh(_n: int | None) -> tuple:
    return refresh()


clientside_callback(ClientsideFunction("citypulse", "render"), Output("wall-sink", "children"),
                    Input("wall-state", "data"), State("wall-map", "id"))
