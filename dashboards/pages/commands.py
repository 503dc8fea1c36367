"""/commands: the log of every command (live status, who asked, who approved) and approvals."""

from __future__ import annotations

import dash
from dash import ALL, Input, Output, State, dcc, html
from dash import ctx as dash_ctx

from control import records
from dashboards.app import ctx
from dashboards.commands_panel import act, approvals, status_table

dash.register_page(__name__, path="/commands", title="citypulse commands")

STATUSES = ["all", *records.STATUSES]


def layout(**_query) -> html.Div:
    """Approval queue on top, the command log (filterable by status) below."""
    return html.Div([
        html.H2("Waiting for approval"), html.Div(id="cm-approvals"),
        html.Div(id="cm-msg", className="msg"),
        html.H2("Command log"),
        dcc.Dropdown(STATUSES, "all", id="cm-status", clearable=False,
                     style={"width": "16rem", "color": "#111"}),
        html.Div(id="cm-log"),
        dcc.Interval(id="cm-tick", interval=2000), dcc.Store(id="cm-version", data=0),
    ], className="page")


@dash.callback(Output("cm-log", "children"), Output("cm-approvals", "children"),
               Input("cm-tick", "n_intervals"), Input("cm-status", "value"),
               Input("cm-version", "data"))
def _refresh(_n, status, _v):
    with ctx().pool.connection() as conn:
        rows = records.listing(conn, 300, None if status == "all" else status)
        pending = records.listing(conn, 100, status="pending_approval")
    return status_table(rows, "cm-table"), approvals(pending, "cm")


@dash.callback(Output("cm-msg", "children"), Output("cm-msg", "className"),
               Output("cm-version", "data"),
               Input({"type": "cm-approve", "index": ALL}, "n_clicks"),
               Input({"type": "cm-reject", "index": ALL}, "n_clicks"),
               State("cm-version", "data"), prevent_initial_call=True)
def _decide(_a, _r, version):
    trig = dash_ctx.triggered_id
    if not trig or not (dash_ctx.triggered and dash_ctx.triggered[0]["value"]):
        return dash.no_update, dash.no_update, dash.no_update
    msg, cls = act("approve" if trig["type"] == "cm-approve" else "reject", trig["index"])
    return msg, cls, (version or 0) + 1
