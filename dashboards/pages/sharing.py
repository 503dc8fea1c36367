"""/sharing: the data officer's page (admin only, checked server-side).

Scenarios with what each may deliver (field by field: allowed, needs approval,
forbidden, with transforms), pending approvals and a form to record an approval
reference, recent transfers (the evidence), the chain's status, and the policy log: every
policy version seen, with its diff to the one before (logged when this page or an export
first meets it).
"""

from __future__ import annotations

import dash
from dash import Input, Output, State, dcc, html

from dashboards import auth, data
from dashboards.app import ctx
from sharing import evidence, records
from sharing.policy import load_policy
from sharing.status import recent_transfers, scenario_table
from sharing.yamlfile import PolicyError

dash.register_page(__name__, path="/sharing", title="citypulse data sharing")

_OUT = {"allowed": "ok", "needs_approval": "warning", "forbidden": "critical"}


def _table(head: list[str], rows: list[list]) -> html.Table:
    return html.Table([html.Tr([html.Th(h) for h in head])]
                      + [html.Tr([html.Td(c) for c in r]) for r in rows], className="queue")


def _scenario(sc: dict) -> html.Div:
    rows = []
    for d in sc["datasets"]:
        for f in d["fields"]:
            rows.append([d["dataset"], f["field"], f["grade"],
                         html.Span(f["outcome"], className=f"sev {_OUT[f['outcome']]}"),
                         ", ".join(f["transforms"]), "" if f["outcome"] == "allowed"
                         else f["reason"]])
    where = f"{sc['destination']}{' (cross-border)' if sc['cross_border'] else ''}"
    return html.Details([
        html.Summary(f"{sc['name']}: {sc['title']} -> {where}; recipients "
                     f"{', '.join(sc['recipients'])}; approval {sc['approval_ref'] or '-'}"),
        html.P(sc["purpose"]),
        _table(["dataset", "field", "grade", "outcome", "transforms", "why not"], rows)])


def _content(user: str) -> html.Div:
    c = ctx()
    try:
        policy = load_policy(c.settings)
    except PolicyError as exc:
        return html.Div([html.H2("Sharing policy is broken"), html.Pre(str(exc))])
    with c.pool.connection() as conn:
        records.log_policy(conn, policy, f"dashboard:{user}")
        table = scenario_table(conn, policy)
        approvals = records.list_approvals(conn)[:20]
        transfers = recent_transfers(conn)
        log = records.policy_log(conn, 10)
    pending = [[sc["name"], sc["destination"], ", ".join(sc["pending_approval"])]
               for sc in table if sc["pending_approval"]]
    return html.Div([
        html.P(f"policy version {policy.hash[:16]}"),
        html.H2("Scenarios"), *[_scenario(sc) for sc in table],
        html.H2("Pending approvals"),
        _table(["scenario", "destination", "blocked until approved"], pending)
        if pending else html.P("none"),
        html.Div([
            dcc.Dropdown(id="sh-scenario", options=list(policy.scenarios),
                         placeholder="scenario", style={"width": "16rem", "color": "#111"}),
            dcc.Input(id="sh-ref", placeholder="approval reference"),
            dcc.Dropdown(id="sh-route", options=list(records.ROUTES),
                         value="security_assessment", style={"width": "14rem", "color": "#111"}),
            dcc.Input(id="sh-note", placeholder="note"),
            html.Button("Record approval", id="sh-approve", className="ok"),
            html.Button("Revoke approvals", id="sh-revoke", className="warn"),
        ], className="row"),
        html.Div(id="sh-msg", className="msg"),
        _table(["id", "scenario", "reference", "route", "by", "at", "revoked"],
               [[a["id"], a["scenario"], a["reference"], a["route"], a["recorded_by"],
                 f"{a['recorded_at']:%Y-%m-%d %H:%M}", a["revoked_at"] and "yes" or ""]
                for a in approvals]),
        html.H2("Recent transfers"),
        _table(["seq", "at", "channel", "recipient", "scenario", "dataset", "format", "rows",
                "outcome", "approval", "withheld", "evidence id"],
               [[t["seq"], f"{t['at']:%Y-%m-%d %H:%M:%S}", t["channel"], t["recipient"],
                 t["scenario"], t["dataset"], t["format"], t["row_count"], t["outcome"],
                 t["approval_ref"] or "", t["withheld"], t["evidence_id"]] for t in transfers]),
        html.H2("Evidence chain"),
        html.Button("Verify the chain now", id="sh-verify"), html.Pre(id="sh-chain"),
        html.H2("Policy log"),
        *[html.Details([html.Summary(f"{e['at']:%Y-%m-%d %H:%M:%S} {e['policy_hash'][:16]} "
                                     f"(first seen by {e['seen_by']})"),
                        html.Pre(e["diff"][:20_000] or "(first version)")]) for e in log],
    ])


def layout(**_query) -> html.Div:
    """Admins only: the content; anyone else a refusal (the check is on the server)."""
    try:
        user = auth.require("admin")
    except PermissionError:
        return html.Div(html.H2("The sharing page is for administrators."), className="page",
                        id="sh-denied")
    return html.Div(_content(user), className="page", id="sh-page")


@dash.callback(Output("sh-msg", "children"), Input("sh-approve", "n_clicks"),
               Input("sh-revoke", "n_clicks"), State("sh-scenario", "value"),
               State("sh-ref", "value"), State("sh-route", "value"), State("sh-note", "value"),
               prevent_initial_call=True)
def _approve(_a, _r, scenario, ref, route, note):
    try:
        user = auth.require("admin")
    except PermissionError as exc:
        return str(exc)
    if not scenario:
        return "choose a scenario"
    with ctx().pool.connection() as conn:
        if dash.ctx.triggered_id == "sh-revoke":
            n = records.revoke_approval(conn, scenario, user)
            data.audit(conn, user, "share_revoke", {"scenario": scenario, "revoked": n})
            return f"revoked {n} approval(s) of {scenario}"
        try:
            i = records.record_approval(conn, scenario, ref or "", route, user, note or "")
        except ValueError as exc:
            return str(exc)
        data.audit(conn, user, "share_approve", {"scenario": scenario, "approval_id": i,
                                                 "reference": ref})
    return f"approval {i} recorded for {scenario}: {ref} (reload to see the outcomes)"


@dash.callback(Output("sh-chain", "children"), Input("sh-verify", "n_clicks"),
               prevent_initial_call=True)
def _verify(_n):
    try:
        auth.require("admin")
    except PermissionError as exc:
        return str(exc)
    c = ctx()
    with c.pool.connection() as conn:
        r = evidence.verify(conn, c.settings)
    state = "OK" if r["ok"] else f"BROKEN ({r['problem_count']} problems)"
    return "\n".join([f"{state}: {r['entries']} entries, {r['heads_checked']} signed heads "
                      f"checked, head seq {r['head']['seq']} {r['head']['hash'][:16]}",
                      *r["problems"]])
