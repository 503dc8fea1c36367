"""/ingest: readings per second, lag, dead letters by reason with samples, loss, offline."""

from __future__ import annotations

import time
from datetime import timedelta

import dash
import flask
from dash import Input, Output, dcc, html

from dashboards import data, figures, sources_health
from dashboards.app import ctx, now, tile
from ingest import metrics as im

dash.register_page(__name__, path="/ingest", title="citypulse ingest health")


def layout(**_query) -> html.Div:
    """Tiles, the rate chart, dead letters (chart and samples)."""
    return html.Div([
        html.Div(id="in-tiles", className="tiles"),
        html.Div([html.Div(dcc.Graph(id="in-rate"), className="col"),
                  html.Div(dcc.Graph(id="in-dead"), className="col")], className="row"),
        html.H3("Sources"), html.Div(id="in-sources"),
        html.H3("Dead-letter samples"), html.Div(id="in-samples"),
        html.H3("Sensors not placed on the city"), html.Div(id="in-unplaced"),
        dcc.Interval(id="in-tick", interval=5000),
    ], className="page")


@dash.callback(Output("in-tiles", "children"), Output("in-rate", "figure"),
               Output("in-dead", "figure"), Output("in-samples", "children"),
               Output("in-sources", "children"), Output("in-unplaced", "children"),
               Input("in-tick", "n_intervals"))
def _refresh(_n):
    since = now() - timedelta(minutes=30)
    c = ctx()
    with c.pool.connection() as conn:
        h = data.ingest_health(conn, since)
        unplaced = data.unplaceable(conn)
    urls = data.metrics_urls(c.settings)
    scraped = data.scrape(urls) if urls else None
    collector = []
    if scraped is not None:
        cur = (time.monotonic(), scraped)
        r = data.rates(c.last_scrape, cur)
        c.last_scrape = cur
        lag_c, arr = scraped["lag_mean_s"], scraped.get("arrival_mean_s", float("nan"))
        collector = [
            tile("messages / s", f"{r.get(im.MESSAGES, 0):,.0f}", "collectors"),
            tile("stored / s", f"{r.get(im.STORED, 0):,.0f}",
                 "collectors"),
            tile("arrival lag", "n/a" if arr != arr else f"{arr:,.2f} s",
                 "arrival -> commit (mean)"),
            tile("device-time lag", "n/a" if lag_c != lag_c else f"{lag_c:,.2f} s",
                 "device time -> commit (mean; a clock ahead counts 0)")]
    elif urls:
        collector = [tile("collectors", "down", ", ".join(urls), "critical")]
    rate = h["rate"]
    last = rate[-1]["n"] if rate else 0
    lag = "n/a" if h["lag_s"] is None else f"{h['lag_s']:,.1f} s"
    tiles = [*collector, tile("readings / s", f"{last:,}", "last second stored"),
             tile("lag", lag, "server now - newest device time not ahead of it"
                  + (f"; {h['ahead_sensors']} sensors stamped ahead" if h.get("ahead_sensors")
                     else "")),
             tile("lost (seq gaps)", f"{h['lost']:,}", "last 30 min"),
             tile("dead letters", f"{sum(d['count'] for d in h['dead_letters']):,}",
                  "last 30 min", "warning"),
             tile("sensors offline", f"{h['sensors_offline']:,}"),
             tile("gateways offline", f"{h['gateways_offline']:,}")]
    samples = [html.Div([html.B(d["reason"]), html.Div(
        [html.Div(s, className="samples") for s in d["samples"]])])
        for d in h["dead_letters"]]
    table = html.Table(
        [html.Tr([html.Th(c) for c in ("sensor", "kind", "lon", "lat", "reason")])]
        + [html.Tr([html.Td(u["sensor_id"]), html.Td(u["kind"]), html.Td(f"{u['lon']:.5f}"),
                    html.Td(f"{u['lat']:.5f}"), html.Td(u["reason"])]) for u in unplaced],
        id="in-unplaced-table", className="samples") if unplaced else html.P(
        "Every registered sensor is placed.")
    push = flask.current_app.extensions.get("citypulse_ingest_push")  # HTTP push, if served
    per_source = sources_health.table(sources_health.scrape(
        urls, getattr(push, "metrics", None))) if urls or push else html.P("No source metrics.")
    return (tiles, figures.ingest_rate(rate), figures.dead_letters(h["dead_letters"]),
            samples or html.P("No dead letters."), per_source, table)
