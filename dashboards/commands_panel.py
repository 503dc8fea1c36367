"""Remote-control widgets: an alert's suggested commands, live status per device, approvals.

Used by /emergency (:func:`panel`, bound to the selected alert in ``em-selected``) and by
/commands (:func:`status_table`, :func:`approvals`).  Every action is checked server-side
(:mod:`control.policy`: viewers never command, requesters never approve) and audited.
"""

from __future__ import annotations

from typing import Any

import dash
from dash import ALL, Input, Output, State, dcc, html
from dash import ctx as dash_ctx

from control import api, policy, records, targets
from dashboards import auth, data
from dashboards.app import ctx

STATUS_CLASS = {"succeeded": "cmd ok", "failed": "cmd err", "expired": "cmd err",
                "rejected": "cmd err", "cancelled": "cmd", "pending_approval": "cmd wait"}


def panel() -> html.Div:
    """The commands section of /emergency."""
    return html.Div([
        html.H3("Commands"),
        html.Div(id="emc-actions"),
        html.Div(id="emc-msg", className="msg"),
        html.Div(id="emc-status"),
        html.H4("Waiting for approval"),
        html.Div(id="emc-approvals"),
        dcc.Store(id="emc-suggest"), dcc.Store(id="emc-version", data=0),
        dcc.Interval(id="emc-tick", interval=1000),
    ], id="emc-panel")


def status_table(rows: list[dict], table_id: str) -> html.Table | html.P:
    """Commands as a table: one row per device, its status live."""
    if not rows:
        return html.P("No commands yet.")
    head = html.Tr([html.Th(h) for h in ("time", "device", "method", "status", "by", "note")])
    body = [html.Tr([
        html.Td(f"{r['created_at'].astimezone(data.LOCAL_TZ):%H:%M:%S}"),
        html.Td(r["device_id"]), html.Td(r["method"]),
        html.Td(r["status"], className=STATUS_CLASS.get(r["status"], "cmd")),
        html.Td(r["requested_by"] + (f" / {r['approved_by']}" if r["approved_by"] else "")),
        html.Td(r["reason"]),
    ], **{"data-device": r["device_id"], "data-status": r["status"],
           "data-method": r["method"]}) for r in rows]
    return html.Table([html.Thead(head), html.Tbody(body)], id=table_id, className="queue")


def approvals(rows: list[dict], kind: str) -> html.Table | html.P:
    """Pending high-risk commands with approve / reject buttons (``kind`` keys the ids)."""
    if not rows:
        return html.P("Nothing waits for approval.")
    return html.Table([html.Tbody([html.Tr([
        html.Td(r["device_id"]), html.Td(r["method"]), html.Td(str(r["params"])),
        html.Td(f"asked by {r['requested_by']}"),
        html.Td([html.Button("Approve", id={"type": f"{kind}-approve", "index": str(r["id"])},
                             className="ok"),
                 html.Button("Reject", id={"type": f"{kind}-reject", "index": str(r["id"])})]),
    ]) for r in rows])], className="queue")


def act(action: str, *args: Any, **kw: Any) -> tuple[str, str]:
    """Run an api action as the session's user: (message, css class)."""
    user, role = auth.current()
    fn = {"approve": api.approve, "reject": api.reject, "fleet": api.fleet}[action]
    try:
        with ctx().pool.connection() as conn:
            out = fn(conn, ctx().settings, *args, by=user or "", role=role, **kw)
            data.audit(conn, user or "anonymous", f"commands.{action}",
                       {"args": [str(a) for a in args]})
    except (policy.PolicyError, api.ControlError, targets.TargetError) as exc:
        return f"Not done: {exc}", "msg err"
    if action == "fleet":
        n = sum(out["by_status"].values())
        return (f"{n} commands requested as {user}: "
                + ", ".join(f"{v} {k}" for k, v in out["by_status"].items())), "msg"
    return f"{action}d {len(out)} command(s) as {user}", "msg"


@dash.callback(Output("emc-actions", "children"), Output("emc-suggest", "data"),
               Input("em-selected", "data"))
def _suggest(alert_id):
    if alert_id is None:
        return "Select an alert to see the commands that fit it.", None
    with ctx().pool.connection() as conn:
        a = data.get_alert(conn, alert_id)
        if a is None:
            return "", None
        sugg = api.suggestions(a)
        for s in sugg:
            try:
                s["devices"] = len(targets.resolve(conn, {"alert": alert_id}, s["kind"]))
            except targets.TargetError:
                s["devices"] = 0
    if not sugg:
        return html.P(f"No commands are suggested for {a['rule']} alerts."), []
    buttons = [html.Button(f"{s['label']} ({s['devices']} {s['kind']})"
                           + (" - needs approval" if s["risk"] == "high" else ""),
                           id={"type": "emc-act", "index": i}, disabled=not s["devices"],
                           className="warn" if s["risk"] == "high" else "ok")
               for i, s in enumerate(sugg)]
    return html.Div(buttons), sugg


@dash.callback(Output("emc-msg", "children"), Output("emc-msg", "className"),
               Output("emc-version", "data"),
               Input({"type": "emc-act", "index": ALL}, "n_clicks"),
               Input({"type": "emc-approve", "index": ALL}, "n_clicks"),
               Input({"type": "emc-reject", "index": ALL}, "n_clicks"),
               State("emc-suggest", "data"), State("em-selected", "data"),
               State("emc-version", "data"), prevent_initial_call=True)
def _act(acts, approves, rejects, sugg, alert_id, version):
    trig = dash_ctx.triggered_id
    if not trig or not (dash_ctx.triggered and dash_ctx.triggered[0]["value"]):
        return dash.no_update, dash.no_update, dash.no_update
    if trig["type"] == "emc-act":
        s = (sugg or [])[trig["index"]]
        msg, cls = act("fleet", s["kind"], s["method"], {"alert": alert_id}, s["params"],
                       alert_id=alert_id)
    else:
        msg, cls = act("approve" if trig["type"] == "emc-approve" else "reject", trig["index"])
    return msg, cls, (version or 0) + 1


@dash.callback(Output("emc-status", "children"), Output("emc-approvals", "children"),
               Input("emc-tick", "n_intervals"), Input("em-selected", "data"),
               Input("emc-version", "data"))
def _status(_n, alert_id, _v):
    with ctx().pool.connection() as conn:
        rows = records.listing(conn, 500, alert_id=alert_id) if alert_id is not None else []
        pending = records.listing(conn, 100, status="pending_approval")
    return status_table(rows, "emc-table"), approvals(pending, "emc")
