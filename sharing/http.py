"""The share API: ``GET /api/share/<scenario>/<dataset>`` for recipients' API keys.

In: the settings, a psycopg pool, and from the host app its checks: ``require(role)`` (the
session user's name or PermissionError), ``require_scope(scope)`` (the request's API key
as an :class:`citypulse.apikeys.KeyInfo`, else it aborts with 401/403 JSON) and
``audit(conn, user, action, detail)``.
Out: :func:`create_blueprint` -> a Flask blueprint.

- ``GET /api/share/<scenario>/<dataset>?format=csv|parquet|geojson&from=ISO&to=ISO``:
  the key (``Authorization: Bearer <key>`` or ``X-API-Key``) must hold scope
  ``share:<scenario>`` and be named as one of the scenario's recipients; at most the
  scenario's (else ``CITYPULSE_SHARE_RATE_LIMIT_PER_MIN``) requests a minute per key.
  The data goes through :func:`sharing.exporter.share`, like the CLI's; the response
  carries ``X-Evidence-Id`` (also on a refusal), ``X-Content-SHA256`` and ``X-Rows``.
- ``GET /api/sharing/status`` (admin session), ``POST /api/sharing/approvals``
  ``{scenario, reference, route, note}`` and ``POST /api/sharing/approvals/<scenario>/revoke``
  (admin session, audited): the data officer's side.
"""

from __future__ import annotations

import collections
import os
import re
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import flask

from citypulse.settings import Settings
from sharing import evidence, records
from sharing.exporter import ShareError, ShareRefused, ShareRequest, share
from sharing.formats import FORMATS, MEDIA_TYPES
from sharing.policy import load_policy
from sharing.status import recent_transfers, scenario_table
from sharing.yamlfile import PolicyError

_REQ_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class RateLimiter:
    """At most ``limit`` requests per key in any 60 s (sliding window), thread-safe."""

    def __init__(self) -> None:
        self._hits: dict[object, collections.deque] = {}
        self._lock = threading.Lock()

    def allow(self, key: object, limit: int, now: float | None = None) -> float:
        """0 if allowed (and counted), else seconds until the next request may go."""
        now = time.monotonic() if now is None else now
        with self._lock:
            q = self._hits.setdefault(key, collections.deque())
            while q and q[0] <= now - 60:
                q.popleft()
            if len(q) >= limit:
                return max(0.1, q[0] + 60 - now)
            q.append(now)
            return 0.0


def _err(status: int, msg: str, **headers) -> flask.Response:
    resp = flask.jsonify({"error": msg})
    resp.status_code = status
    resp.headers.update(headers)
    return resp


def _when(text: str | None) -> datetime | None:
    if not text:
        return None
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def create_blueprint(settings: Settings, pool, require, require_scope, audit
                     ) -> flask.Blueprint:
    """The share API and the data officer's endpoints (see the module doc)."""
    bp = flask.Blueprint("sharing", __name__)
    limiter = RateLimiter()

    @bp.route("/api/share/<scenario>/<dataset>")
    def get_share(scenario: str, dataset: str):
        info = require_scope(f"share:{scenario}")
        try:
            policy = load_policy(settings)
        except PolicyError as exc:
            return _err(503, f"sharing policy is broken: {exc}")
        sc = policy.scenarios.get(scenario)
        if sc is None:
            return _err(404, f"no scenario {scenario!r}")
        if info.name not in sc.recipient_names():
            return _err(403, f"key {info.name!r} is not a recipient of {scenario!r}")
        wait = limiter.allow(info.id, sc.rate_limit_per_min or settings.share_rate_limit_per_min)
        if wait:
            return _err(429, "rate limit reached", **{"Retry-After": str(int(wait) + 1)})
        args = flask.request.args
        fmt = args.get("format", "csv")
        if fmt not in FORMATS:
            return _err(400, f"format: one of {', '.join(FORMATS)}")
        try:
            lo, hi = _when(args.get("from")), _when(args.get("to"))
        except ValueError:
            return _err(400, "from/to: ISO 8601 times, e.g. 2026-11-30T08:00:00Z")
        rid = flask.request.headers.get("X-Request-Id", "")
        rid = rid if _REQ_ID.match(rid) else uuid.uuid4().hex
        fd, name = tempfile.mkstemp(prefix="share-", suffix="." + fmt)
        os.close(fd)
        path = Path(name)
        req = ShareRequest(scenario, dataset, fmt, info.name, lo, hi, "http", rid)
        try:
            with pool.connection() as conn:
                d = share(conn, settings, policy, req, path)
        except ShareError as exc:
            path.unlink(missing_ok=True)
            return _err(404 if "no dataset" in str(exc) else 400, str(exc))
        except ShareRefused as exc:
            path.unlink(missing_ok=True)
            return _err(403, str(exc), **{"X-Evidence-Id": str(exc.evidence["evidence_id"]),
                                          "X-Request-Id": rid})
        f = path.open("rb")
        path.unlink()  # the open file stays readable; nothing is left behind
        resp = flask.send_file(f, mimetype=MEDIA_TYPES[fmt], as_attachment=True,
                               download_name=f"{scenario}.{dataset}.{fmt}")
        resp.headers.update({"X-Evidence-Id": str(d.evidence["evidence_id"]),
                             "X-Content-SHA256": d.sha256, "X-Rows": str(d.rows),
                             "X-Request-Id": rid, "X-Policy-Version": policy.hash})
        return resp

    def _admin():
        try:
            return require("admin"), None
        except PermissionError as exc:
            return None, _err(403, str(exc))

    @bp.route("/api/sharing/status")
    def status():
        user, denied = _admin()
        if denied:
            return denied
        policy = load_policy(settings)
        with pool.connection() as conn:
            records.log_policy(conn, policy, user)
            return flask.jsonify({
                "policy_hash": policy.hash, "scenarios": scenario_table(conn, policy),
                "approvals": records.list_approvals(conn),
                "transfers": recent_transfers(conn), "policy_log": records.policy_log(conn),
                "chain": evidence.verify(conn, settings)})

    @bp.route("/api/sharing/approvals", methods=["POST"])
    def approve():
        user, denied = _admin()
        if denied:
            return denied
        body = flask.request.get_json(silent=True) or {}
        if not isinstance(body, dict):
            return _err(400, "send a JSON object {scenario, reference, route, note}")
        scenario = str(body.get("scenario", ""))
        if scenario not in load_policy(settings).scenarios:
            return _err(404, f"no scenario {scenario!r}")
        with pool.connection() as conn:
            try:
                i = records.record_approval(conn, scenario, str(body.get("reference", "")),
                                            str(body.get("route", "security_assessment")),
                                            user, str(body.get("note", "")))
            except ValueError as exc:
                return _err(400, str(exc))
            audit(conn, user, "share_approve", {"scenario": scenario, "approval_id": i,
                                                "reference": body.get("reference")})
        return flask.jsonify({"ok": True, "approval_id": i, "by": user})

    @bp.route("/api/sharing/approvals/<scenario>/revoke", methods=["POST"])
    def revoke(scenario: str):
        user, denied = _admin()
        if denied:
            return denied
        with pool.connection() as conn:
            n = records.revoke_approval(conn, scenario, user)
            audit(conn, user, "share_revoke", {"scenario": scenario, "revoked": n})
        return flask.jsonify({"ok": True, "revoked": n, "by": user})

    return bp
