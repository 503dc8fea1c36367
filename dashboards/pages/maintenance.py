"""/maintenance: device upkeep for engineers and field crews, apart from the wall's incidents.

One row per silent device, grouped by zone, with the alert behind it; a CSV download for
field crews.  Rows leave by themselves when the device reports again (its alert resolves).
"""

from __future__ import annotations

import dash
from dash import Input, Output, State, dcc, html

from analytics import maintenance
from dashboards import data
from dashboards.app import ctx

dash.register_page(__name__, path="/maintenance", title="citypulse maintenance queue")


def _items() -> list[dict]:
    with ctx().pool.connection() as conn:
        return maintenance.tickets(maintenance.split(data.list_alerts(conn, open_only=True,
                                                                      limit=2000))[1])


def layout(**_query) -> html.Div:
    """The queue table and the CSV button."""
    return html.Div([
        html.H2("Maintenance queue (device upkeep)"),
        html.Button("Download CSV for field crews", id="mt-csv-btn"),
        dcc.Download(id="mt-csv"),
        dcc.Interval(id="mt-tick", interval=10_000),
        html.Div(id="mt-table"),
    ])


@dash.callback(Output("mt-table", "children"), Input("mt-tick", "n_intervals"))
def _table(_n):
    items = _items()
    if not items:
        return html.P("No open maintenance work.", id="mt-empty")
    head = html.Tr([html.Th(c) for c in maintenance.CSV_FIELDS])
    body = [html.Tr([html.Td(str(r[c])) for c in maintenance.CSV_FIELDS],
                    className="mt-row") for r in items]
    return html.Table([html.Thead(head), html.Tbody(body)], id="mt-rows")


@dash.callback(Output("mt-csv", "data"), Input("mt-csv-btn", "n_clicks"),
               State("mt-tick", "n_intervals"), prevent_initial_call=True)
def _csv(_clicks, _n):
    return {"content": maintenance.tickets_csv(_items()), "filename": "maintenance.csv",
            "type": "text/csv"}
