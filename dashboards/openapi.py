"""The OpenAPI 3.1 document of citypulse's own HTTP API, built from the app's route table.

In: the Flask server (its ``url_map``: every route it really serves) and
``dashboards/openapi.yaml`` (per operation ``"METHOD /path"``: summary, parameters, request
body, responses, shared components).  Out: :func:`document` -> the OpenAPI dict, served by
:func:`install` at ``GET /api/openapi.json`` (a session or an API key with ``api:read``).

Paths and path parameters come from the routes themselves (``<int:id>`` -> integer), so a
route added to the app appears in the document at once; one without an entry in the YAML is
marked ``x-undocumented`` (:func:`undocumented` lists them; a test fails on any).  The
standard APIs (``/ngsi-ld/``, ``/sta/``) and the web pages have their own specifications and
are not part of this document; neither is the ``/api/`` catch-all that answers 404.
"""

from __future__ import annotations

import copy
import re
from functools import cache
from pathlib import Path

import flask
import yaml

from dashboards import auth

SPEC = Path(__file__).resolve().parent / "openapi.yaml"
OWN = ("/api/", "/healthz")
LEFT_OUT = frozenset({"api_unknown"})
_ARG = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")
_TYPES = {"int": {"type": "integer"}, "float": {"type": "number"}}
_ERROR = {"$ref": "#/components/schemas/Error"}


@cache
def _spec() -> dict:
    return yaml.safe_load(SPEC.read_text())


def _responses() -> dict:
    def err(text: str) -> dict:
        return {"description": text, "content": {"application/json": {"schema": _ERROR}}}

    return {"Error": err("refused; the reason in 'error'"),
            "BadParameter": err("a bad parameter; 'parameter' names it"),
            "Unauthorized": err("no session, or no valid API key"),
            "Forbidden": err("the role or the key's scope does not allow it")}


def routes(server: flask.Flask) -> list[tuple[str, str, str]]:
    """(method, OpenAPI path, endpoint) of every own route the server serves."""
    out = []
    for rule in server.url_map.iter_rules():
        if rule.endpoint in LEFT_OUT or not (rule.rule.startswith(OWN)):
            continue
        path = _ARG.sub(lambda m: "{" + m.group(2) + "}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            out.append((method, path, rule.endpoint))
    return sorted(out, key=lambda r: (r[1], r[0]))


def _path_params(server: flask.Flask, endpoint: str, path: str) -> list[dict]:
    rule = next(r for r in server.url_map.iter_rules(endpoint)
                if _ARG.sub(lambda m: "{" + m.group(2) + "}", r.rule) == path)
    return [{"name": name, "in": "path", "required": True,
             "schema": dict(_TYPES.get(conv or "", {"type": "string"}))}
            for conv, name in _ARG.findall(rule.rule)]


def _operation(server: flask.Flask, method: str, path: str, endpoint: str) -> dict:
    spec = copy.deepcopy(_spec()["operations"].get(f"{method} {path}"))
    op = spec or {"summary": endpoint, "x-undocumented": True,
                  "responses": {"default": {"description": "undocumented"}}}
    op["operationId"] = f"{endpoint}_{method.lower()}".replace(".", "_")
    given = {p.get("name") for p in op.get("parameters", []) if p.get("in") == "path"}
    op["parameters"] = [p for p in _path_params(server, endpoint, path)
                        if p["name"] not in given] + op.get("parameters", [])
    if not op["parameters"]:
        del op["parameters"]
    if op.get("security") != []:
        op["responses"].setdefault("401", {"$ref": "#/components/responses/Unauthorized"})
        op["responses"].setdefault("403", {"$ref": "#/components/responses/Forbidden"})
    return op


def document(server: flask.Flask) -> dict:
    """The OpenAPI 3.1 document of ``server``'s own routes."""
    comps = copy.deepcopy({k: v for k, v in _spec()["components"].items()})
    comps["responses"] = _responses()
    comps["securitySchemes"] = {
        "session": {"type": "apiKey", "in": "cookie",
                    "name": server.config.get("SESSION_COOKIE_NAME", "session"),
                    "description": "a login session (POST /login); state-changing requests "
                                   "also need an Origin header of this site"},
        "bearer": {"type": "http", "scheme": "bearer",
                   "description": "an API key: citypulse keys create NAME --scope api:read"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}
    paths: dict[str, dict] = {}
    for method, path, endpoint in routes(server):
        paths.setdefault(path, {})[method.lower()] = _operation(server, method, path, endpoint)
    return {
        "openapi": "3.1.0",
        "info": {"title": "citypulse HTTP API", "version": "1",
                 "description": "citypulse's own endpoints: the twin's state, alerts and "
                                "their actions, remote commands, HTTP ingest and sharing. "
                                "The standard APIs are at /ngsi-ld/v1/ (NGSI-LD) and "
                                "/sta/v1.1/ (SensorThings); see docs/standard-apis.md."},
        "servers": [{"url": "/"}],
        "security": [{"session": []}, {"bearer": []}, {"apiKey": []}],
        "paths": paths,
        "components": comps,
    }


def undocumented(server: flask.Flask) -> list[str]:
    """``METHOD /path`` of every own route without an entry in openapi.yaml."""
    ops = _spec()["operations"]
    return [f"{m} {p}" for m, p, _e in routes(server) if f"{m} {p}" not in ops]


def install(server: flask.Flask) -> None:
    """Serve the document at ``GET /api/openapi.json``."""

    @server.get("/api/openapi.json")
    def openapi_json():
        auth.require_read()
        return flask.jsonify(document(flask.current_app))
