"""Sharing recipients on the standard APIs (``/sta/``, ``/ngsi-ld/``), read only.

In: the settings and the connection pool.  Out: :func:`install` adds an ``after_request``
hook to the server and returns ``(require_read, access)`` for the standard blueprints:

- ``require_read()``: a session, HTTP Basic or a key with ``api:read`` as before; a key
  holding ``share:<scenario>`` and named as a recipient of that scenario also passes (the
  first such scenario by name); any other key gets 403.
- ``access()``: that recipient's :class:`sharing.access.Access` (from the sharing policy
  function), or None for a reader who sees everything.

Every recipient read is put on the sharing evidence chain like an export (channel
``sta`` or ``ngsi-ld``, dataset = the path, SHA-256 of the body); the answer carries
``X-Evidence-Id``.
"""

from __future__ import annotations

import re
import uuid

import flask
import orjson

from citypulse.settings import Settings
from dashboards import auth
from sharing import evidence, records
from sharing.access import audit_record, reading_access
from sharing.policy import load_policy
from sharing.yamlfile import PolicyError

_REQ_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def _rows(body: bytes) -> int:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return 0
    if isinstance(doc, dict) and isinstance(doc.get("value"), list):
        return len(doc["value"])
    if isinstance(doc, dict) and isinstance(doc.get("features"), list):
        return len(doc["features"])
    return len(doc) if isinstance(doc, list) else 1


def install(server: flask.Flask, settings: Settings, pool):
    """Hook the evidence of recipient reads into ``server``; ``(require_read, access)``."""

    def require_read() -> str:
        key = flask.g.get("api_key")
        if key is None or key.allows("api:read"):
            return auth.require_read()
        try:
            policy = load_policy(settings)
        except PolicyError as exc:
            resp = flask.jsonify({"error": f"sharing policy is broken: {exc}"})
            resp.status_code = 503
            flask.abort(resp)
        mine = [sc for name, sc in sorted(policy.scenarios.items())
                if key.allows(f"share:{name}") and key.name in sc.recipient_names()]
        if not mine:
            return auth.require_read()  # 403: lacks api:read
        sc = mine[0]
        flask.g.scope_checked = True
        with pool.connection() as conn:
            approval = records.active_approval(conn, sc.name) if sc.cross_border else None
        flask.g.share_read = (policy, reading_access(policy, sc.name, approval), sc, approval,
                              key.name)
        return "key:" + key.name

    def access():
        got = flask.g.get("share_read")
        return got[1] if got else None

    @server.after_request
    def evidence_of_read(resp: flask.Response) -> flask.Response:
        got = flask.g.get("share_read")
        if not got or not flask.request.path.startswith(auth.STANDARD_PREFIXES):
            return resp
        policy, acc, sc, approval, name = got
        body = resp.get_data()
        rid = flask.request.headers.get("X-Request-Id", "")
        rid = rid if _REQ_ID.match(rid) else uuid.uuid4().hex
        path = flask.request.full_path.rstrip("?")
        channel = "sta" if path.startswith("/sta/") else "ngsi-ld"
        rec = audit_record(policy, acc, recipient=name, channel=channel, request_id=rid,
                           path=path, body=body, rows=_rows(body) if resp.status_code < 400
                           else 0, status=resp.status_code, destination=sc.destination,
                           approval_ref=approval)
        with pool.connection() as conn:
            entry = evidence.append(conn, settings, rec)
        resp.headers["X-Evidence-Id"] = str(entry["evidence_id"])
        resp.headers["X-Request-Id"] = rid
        return resp

    return require_read, access
