"""/emergency: the alert queue; acknowledge, escalate, resolve; fly to an alert, evidence."""

from __future__ import annotations

import dash
from dash import (
    ALL,
    ClientsideFunction,
    Input,
    Output,
    State,
    clientside_callback,
    dcc,
    html,
)
from dash import (
    ctx as dash_ctx,
)

from analytics import maintenance
from dashboards import auth, commands_panel, data, figures
from dashboards.app import ctx, now

dash.register_page(__name__, path="/emergency", title="citypulse emergency desk")


def layout(**_query) -> html.Div:
    """Queue on the left; map, actions and evidence of the selected alert on the right."""
    return html.Div([
        html.Div([
            html.Div([html.H2("Alert queue"), html.Div(id="em-queue")], className="col",
                     style={"flex": "2 1 0"}),
            html.Div([
                html.Div(id="em-map", className="map", style={"height": "42vh"}),
                html.Div(id="em-detail"),
                dcc.Textarea(id="em-note", placeholder="note (optional)",
                             style={"width": "100%", "height": "3rem", "color": "#e6edf3",
                                    "background": "#0d1628"}),
                html.Div([html.Button("Acknowledge", id="em-ack", className="ok"),
                          html.Button("Escalate", id="em-escalate", className="warn"),
                          html.Button("Resolve", id="em-resolve")]),
                html.Div(id="em-msg", className="msg"),
                commands_panel.panel(),
                dcc.Graph(id="em-evidence", figure=figures.empty("Evidence",
                                                                 "select an alert")),
            ], className="col", style={"flex": "3 1 0"}),
        ], className="row"),
        dcc.Interval(id="em-tick", interval=5000),
        dcc.Store(id="em-selected"), dcc.Store(id="em-version", data=0),
        dcc.Store(id="em-state"), dcc.Store(id="em-fly"),
        html.Div(id="em-sink", style={"display": "none"}),
        html.Div(id="em-fly-sink", style={"display": "none"}),
    ], className="page")


def _age(t) -> str:
    mins = int((now() - t).total_seconds() // 60)
    return f"{mins // 60} h {mins % 60:02d} min" if mins >= 60 else f"{mins} min"


def queue_table(alerts: list[dict], selected: int | None) -> html.Table:
    """The queue as a table: one clickable row per alert (severity, title, where, age)."""
    head = html.Tr([html.Th(h) for h in ("severity", "alert", "where", "age", "status")])
    rows = [html.Tr([
        html.Td(html.Span(a["severity"], className=f"sev {a['severity']}")),
        html.Td(a["title"] or a["rule"]),
        html.Td(f"{a['zone_id']} / {a['entity_id']}"),
        html.Td(_age(a["started_at"])),
        html.Td(a["status"] + (f" by {a['acknowledged_by']}" if a["acknowledged_by"] else "")),
    ], id={"type": "alert-row", "index": a["id"]}, n_clicks=0,
        className="alert-row" + (" selected" if a["id"] == selected else ""))
        for a in alerts]
    return html.Table([html.Thead(head), html.Tbody(rows)], className="queue")


@dash.callback(Output("em-queue", "children"), Output("em-state", "data"),
               Input("em-tick", "n_intervals"), Input("em-version", "data"),
               Input("em-selected", "data"))
def _queue(_n, _v, selected):
    with ctx().pool.connection() as conn:
        alerts = maintenance.split(data.list_alerts(conn, open_only=True))[0]  # incidents
        state = data.map_state(conn, with_offline=False)
    if not alerts:
        return html.P("No open alerts."), state
    return queue_table(alerts, selected), state


@dash.callback(Output("em-selected", "data"),
               Input({"type": "alert-row", "index": ALL}, "n_clicks"),
               prevent_initial_call=True)
def _select(clicks):
    trig = dash_ctx.triggered_id
    if not trig or not any(clicks or []):
        return dash.no_update
    return trig["index"]


@dash.callback(Output("em-detail", "children"), Output("em-evidence", "figure"),
               Output("em-fly", "data"), Input("em-selected", "data"),
               Input("em-version", "data"))
def _detail(alert_id, _v):
    if alert_id is None:
        return "Select an alert in the queue.", dash.no_update, dash.no_update
    with ctx().pool.connection() as conn:
        a = data.get_alert(conn, alert_id)
        if a is None:
            return f"alert {alert_id} not found", figures.empty("Evidence"), None
        series, trail = data.alert_evidence(conn, a)
    detail = html.Div([
        html.H3([html.Span(a["severity"], className=f"sev {a['severity']}"), " ",
                 a["title"] or a["rule"]]),
        html.P(f"#{a['id']} · rule {a['rule']} · {a['entity_kind']} {a['entity_id']} · zone "
               f"{a['zone_id']} · since {a['started_at'].astimezone(data.LOCAL_TZ):%H:%M:%S}"
               f" ({_age(a['started_at'])}) · status {a['status']}"
               + (f" · escalation level {a['escalation_level']}"
                  if a["escalation_level"] else "")),
        html.Ul([html.Li(f"{e['at'].astimezone(data.LOCAL_TZ):%H:%M:%S} {e['action']} by "
                         f"{e['by']}" + (f": {e['note']}" if e["note"] else ""))
                 for e in trail], className="trail"),
    ])
    fly = {"lon": a["lon"], "lat": a["lat"]} if a["lon"] is not None else None
    return detail, figures.evidence(series), fly


@dash.callback(Output("em-msg", "children"), Output("em-msg", "className"),
               Output("em-version", "data"),
               Input("em-ack", "n_clicks"), Input("em-escalate", "n_clicks"),
               Input("em-resolve", "n_clicks"),
               State("em-selected", "data"), State("em-note", "value"),
               State("em-version", "data"), prevent_initial_call=True)
def _act(_a, _e, _r, alert_id, note, version):
    action = {"em-ack": "acknowledge", "em-escalate": "escalate",
              "em-resolve": "resolve"}.get(dash_ctx.triggered_id)
    if action is None:
        return dash.no_update, dash.no_update, dash.no_update
    try:
        user = auth.require("operator")  # server-side: hidden buttons are not a check
    except PermissionError as exc:
        return f"Not allowed: {exc}", "msg err", dash.no_update
    if alert_id is None:
        return "Select an alert first.", "msg err", dash.no_update
    with ctx().pool.connection() as conn:
        error = data.alert_action(conn, alert_id, action, user, note or "")
    if error:
        return error, "msg err", (version or 0) + 1
    return f"{action}d alert {alert_id} as {user}", "msg", (version or 0) + 1


clientside_callback(ClientsideFunction("citypulse", "render"), Output("em-sink", "children"),
                    Input("em-state", "data"), State("em-map", "id"))
clientside_callback(ClientsideFunction("citypulse", "fly"), Output("em-fly-sink", "children"),
                    Input("em-fly", "data"), State("em-map", "id"))
