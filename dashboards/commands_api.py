"""HTTP API of remote control (role-checked server-side; the session is the caller).

    POST /api/commands                 {"device", "method", "params", "expires_in_s", "alert_id"}
                                       or {"kind", "method", "target": {"zone"|"segment"|
                                       "alert": ...}, "params", ...} for a fleet command
                                       -> 201 with the command record (or the fleet summary)
    GET  /api/commands[?status=&alert_id=&device=&limit=]  -> recent commands
    GET  /api/commands/<id>            -> one command with its audit trail
    POST /api/commands/<id>/approve|reject|cancel (id of a command or a fleet)

403 for viewers (and for the requester approving their own command), 400 for a bad request
(unknown device or method, params outside the schema), 409 when the state does not allow it.
"""

from __future__ import annotations

from typing import Any

import flask
import orjson

from control import api, policy, records, targets
from dashboards import auth, data


def _json(body: Any, status: int = 200) -> flask.Response:
    return flask.Response(orjson.dumps(body, default=str), status=status,
                          mimetype="application/json")


def _caller() -> tuple[str | None, str | None]:
    return auth.current()


def install(server: flask.Flask, context: Any) -> None:
    """Add the /api/commands routes to the dashboards' Flask server."""

    def run(fn, *args, **kwargs) -> flask.Response:
        user, role = _caller()
        try:
            with context.pool.connection() as conn:
                out = fn(conn, context.settings, *args, by=user or "", role=role, **kwargs)
                data.audit(conn, user or "anonymous", f"commands.{fn.__name__}",
                           {"args": [str(a) for a in args]})
        except policy.PolicyError as exc:
            return _json({"error": str(exc)}, 403)
        except targets.TargetError as exc:
            return _json({"error": str(exc)}, 400)
        except api.StateError as exc:
            return _json({"error": str(exc)}, 409)
        except api.ControlError as exc:
            return _json({"error": str(exc)}, 400)
        if isinstance(out, list):
            return _json([records.jsonable(r) for r in out])
        return _json(records.jsonable(out) if "id" in out else out, 201)

    @server.route("/api/commands", methods=["POST"])
    def commands_post():
        body = flask.request.get_json(silent=True)
        if not isinstance(body, dict) or "method" not in body:
            return _json({"error": "send a JSON object with 'method' and 'device' (or 'kind' "
                                   "and 'target')"}, 400)
        common = {"expires_in_s": body.get("expires_in_s"), "alert_id": body.get("alert_id")}
        if "device" in body:
            return run(api.request, str(body["device"]), str(body["method"]),
                       body.get("params"), **common)
        if "kind" in body and isinstance(body.get("target"), dict):
            return run(api.fleet, str(body["kind"]), str(body["method"]), body["target"],
                       body.get("params"), rate_per_s=body.get("rate_per_s"),
                       abort_pct=body.get("abort_pct"), **common)
        return _json({"error": "name a 'device', or a 'kind' and a 'target'"}, 400)

    @server.route("/api/commands", methods=["GET"])
    def commands_list():
        a = flask.request.args
        for name in ("limit", "alert_id"):
            text = a.get(name)
            if text is not None and not (text.isascii() and text.isdigit() and len(text) < 10):
                return _json({"error": f"parameter {name!r}: {text[:40]!r} is not a whole "
                                       "number", "parameter": name}, 400)
        with context.pool.connection() as conn:
            rows = records.listing(conn, max(1, min(int(a.get("limit", 200)), 2000)),
                                   a.get("status"), a.get("device"),
                                   int(a["alert_id"]) if a.get("alert_id") else None)
        return _json([records.jsonable(r) for r in rows])

    @server.route("/api/commands/<ident>", methods=["GET"])
    def commands_show(ident: str):
        with context.pool.connection() as conn:
            rec = records.get(conn, ident)
        if rec is None:
            return _json({"error": f"no command {ident}"}, 404)
        return _json(records.jsonable(rec))

    @server.route("/api/commands/<ident>/<action>", methods=["POST"])
    def commands_action(ident: str, action: str):
        fn = {"approve": api.approve, "reject": api.reject, "cancel": api.cancel}.get(action)
        if fn is None:
            return _json({"error": f"unknown action {action}"}, 404)
        return run(fn, ident)
