"""Dashboard fixtures: one seeded database and one app per session, a Chromium browser."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from citypulse.settings import Settings
from tests.conftest import fresh_database

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboards"
KIOSK = "kiosk-test-token-123"


@pytest.fixture(scope="session")
def dash_db(pg) -> str:
    url = fresh_database(pg)
    settings = Settings(database_url=url)
    with psycopg.connect(url, autocommit=True) as conn:
        from bench.seed import seed

        seed(conn, settings, sensors=3000, minutes=40, alerts=4)
    return url


@pytest.fixture(scope="session")
def collector_metrics():
    """A real ingest Metrics registry served over HTTP, as a running collector does."""
    from prometheus_client import start_http_server

    from ingest.collector import Metrics

    m = Metrics()
    m.messages.labels(kind="gateway", source="native").inc(10)
    m.stored.inc(1000)
    server, _thread = start_http_server(0, addr="127.0.0.1", registry=m.registry)
    yield m, f"http://127.0.0.1:{server.server_port}/metrics"
    server.shutdown()


@pytest.fixture(scope="session")
def dash_settings(dash_db, collector_metrics, tmp_path_factory) -> Settings:
    return Settings(database_url=dash_db, kiosk_token=KIOSK,
                    dashboard_secret="test-secret-0123456789",
                    ingest_metrics_urls=[collector_metrics[1]],
                    data_dir=tmp_path_factory.mktemp("dash"))


@pytest.fixture(scope="session")
def dash_server(dash_settings):
    from dashboards.app import create_app
    from dashboards.serve import serve

    app = create_app(dash_settings)
    served = serve(app)
    yield served
    served.stop()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    from dashboards.serve import launch

    with sync_playwright() as pw:
        b = launch(pw)
        yield b
        b.close()


class PageLog:
    """Console errors, page errors and every requested URL of one page."""

    def __init__(self, page) -> None:
        self.errors: list[str] = []
        self.requests: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", lambda r: self.requests.append(r.url))
        # every Content-Security-Policy violation becomes a console error (pages must have none)
        page.add_init_script("document.addEventListener('securitypolicyviolation', e => "
                             "console.error('CSP violation: ' + e.violatedDirective + ' ' + "
                             "e.blockedURI + ' ' + e.sourceFile + ':' + e.lineNumber))")

    def foreign(self) -> list[str]:
        return [u for u in self.requests
                if urlsplit(u).scheme not in ("data", "blob")
                and urlsplit(u).hostname != "127.0.0.1"]


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1920, "height": 1080})
    ctx.set_default_timeout(60_000)  # the machine is shared: be patient, not flaky
    pg = ctx.new_page()
    pg.log = PageLog(pg)
    yield pg
    foreign = pg.log.foreign()
    ctx.close()
    assert not foreign, f"requests left localhost: {foreign}"


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
