"""The OpenAPI document of citypulse's own API: generated from the real route table (a route
without documentation fails here), valid, and honoured by the running app under schemathesis
fuzzing (no 500, every status and body as documented)."""

from __future__ import annotations

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings

from dashboards import openapi
from tests.standards.conftest import login

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def admin(std_server) -> requests.Session:
    return login(std_server, "admin")


@pytest.fixture(scope="module")
def served_doc(std_server, admin) -> dict:
    r = admin.get(std_server.url + "/api/openapi.json", timeout=30)
    assert r.status_code == 200
    return r.json()


def test_every_own_route_is_documented(std_server, served_doc):
    from flask import Flask

    app = std_server.server.app  # the WSGI app the test server serves
    assert isinstance(app, Flask)
    assert openapi.undocumented(app) == []
    ops = {(m.upper(), p) for p, item in served_doc["paths"].items() for m in item}
    assert {(m, p) for m, p, _e in openapi.routes(app)} == ops
    for must in [("GET", "/api/twin/segments"), ("POST", "/api/alerts/{alert_id}/{action}"),
                 ("POST", "/api/commands"), ("POST", "/api/v1/ingest"),
                 ("GET", "/api/share/{scenario}/{dataset}"), ("GET", "/api/state")]:
        assert must in ops
    assert not any("x-undocumented" in op for item in served_doc["paths"].values()
                   for op in item.values())
    alert = served_doc["paths"]["/api/alerts/{alert_id}/{action}"]["post"]
    assert {"name": "alert_id", "in": "path", "required": True,
            "schema": {"type": "integer"}} in alert["parameters"]


def test_a_new_route_shows_up_undocumented(std_settings):
    from flask import Flask

    app = Flask("probe")
    app.add_url_rule("/api/new/<int:n>", "new_thing", lambda n: "x")
    assert openapi.undocumented(app) == ["GET /api/new/{n}"]
    op = openapi.document(app)["paths"]["/api/new/{n}"]["get"]
    assert op["x-undocumented"] is True


def test_the_document_needs_a_credential(std_server):
    assert requests.get(std_server.url + "/api/openapi.json", timeout=30).status_code == 401


def test_fuzz_the_own_api(std_server, admin, served_doc):
    """Each operation, valid and invalid inputs, as an admin session: no 500, and statuses,
    content types and bodies as documented (schemathesis' checks)."""
    from hypothesis import given
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    # a request valid by the schema may still name a device or scenario that does not exist
    # (400/404 by the state, not the shape): that check does not apply to this API
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    schema = schemathesis.openapi.from_dict(served_doc)
    # the credential travels in a header schemathesis can strip or spoil (ignored-auth check)
    cookie = "; ".join(f"{c.name}={c.value}" for c in admin.cookies)
    plain = requests.Session()
    failures, calls = [], 0
    for result in schema.get_all_operations():
        op = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=op.as_strategy(generation_mode=mode))
            @settings(max_examples=4, deadline=None, derandomize=True, database=None,
                      phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=list(HealthCheck))
            def run(case):
                nonlocal calls
                calls += 1
                plain.cookies.clear()
                case.call_and_validate(base_url=std_server.url, session=plain,
                                       headers={"Origin": std_server.url, "Cookie": cookie},
                                       excluded_checks=[positive_data_acceptance])

            try:
                run()
            except Unsatisfiable:  # no invalid input exists (an operation without inputs)
                continue
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collect them all
                failures.append(f"{op.label} [{mode.value}]: {str(exc)[:600]}")
    assert calls >= 2 * len(served_doc["paths"])
    assert not failures, "\n\n".join(failures)
