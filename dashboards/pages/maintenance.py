"""/maintenance: device upkeep for engineers and field crews, apart from the wall's incidents.

One row per open maintenance ticket (a device or a gateway: silent, battery low, clock
ahead, stuck values, bad data; ``analytics.upkeep``), grouped by zone, with the evidence and
the last good reading; a CSV download for field crews.  Tickets close by themselves when the
device recovers.  Upkeep alerts without a ticket yet (the worker syncs tickets every minute)
are listed below them.
"""

from __future__ import annotations

import dash
from dash import Input, Output, State, dcc, html

from analytics import maintenance, upkeep
from dashboards import data
from dashboards.app import ctx

dash.register_page(__name__, path="/maintenance", title="citypulse maintenance queue")

COLUMNS = upkeep.CSV_FIELDS


def _tickets() -> list[dict]:
    with ctx().pool.connection() as conn:
        return upkeep.open_tickets(conn)


def _pending(tickets: list[dict]) -> list[dict]:
    """Silent devices named by upkeep alerts that no ticket covers yet."""
    with ctx().pool.connection() as conn:
        items = maintenance.tickets(maintenance.split(data.list_alerts(conn, open_only=True,
                                                                       limit=2000))[1])
    have = {t["device"] for t in tickets}
    return [i for i in items if i["device"] not in have]


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
    tickets = _tickets()
    pending = _pending(tickets)
    if not tickets and not pending:
        return html.P("No open maintenance work.", id="mt-empty")
    out = []
    if tickets:
        head = html.Tr([html.Th(c) for c in COLUMNS])
        body = [html.Tr([html.Td(str(r[c])) for c in COLUMNS], className="mt-row",
                        **{"data-device": r["device"]}) for r in tickets]
        out.append(html.Table([html.Thead(head), html.Tbody(body)], id="mt-rows"))
    if pending:
        out.append(html.H3("Silent devices (ticket pending)"))
        head = html.Tr([html.Th(c) for c in maintenance.CSV_FIELDS])
        body = [html.Tr([html.Td(str(r[c])) for c in maintenance.CSV_FIELDS],
                        className="mt-row mt-pending", **{"data-device": r["device"]})
                for r in pending]
        out.append(html.Table([html.Thead(head), html.Tbody(body)], id="mt-pending"))
    return out


@dash.callback(Output("mt-csv", "data"), Input("mt-csv-btn", "n_clicks"),
               State("mt-tick", "n_intervals"), prevent_initial_call=True)
def _csv(_clicks, _n):
    tickets = _tickets()
    extra = [{"zone": p["zone"], "kind": "sensor", "device": p["device"], "problems": "silent",
              "since": p["since"], "evidence": f"alert {p['alert']}", "last_good_at": ""}
             for p in _pending(tickets)]
    return {"content": upkeep.tickets_csv(tickets + extra), "filename": "maintenance.csv",
            "type": "text/csv"}
