"""``citypulse bench dashboard``: the wall with N sensors in headless Chromium.

In: a sensor count.  Out: a JSON-ready dict: ``first_render_s`` (navigation to the wall's
first full deck.gl render: static geometry + state drawn), ``static_bytes`` (city.json +
sensors.bin, fetched once), ``refresh_bytes`` (mean response bytes of the wall's refresh
callback), ``refresh_server_ms`` (mean/max server time of that callback), for a private
PostgreSQL seeded with :func:`bench.seed.seed`.  Everything runs on loopback.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import psycopg
from rich.console import Console

from citypulse import schema
from citypulse.settings import Settings
from citypulse.stack import PrivatePostgres


def run(sensors: int = 200_000, refreshes: int = 5, fast_gl: bool = True) -> dict:
    """Seed a private database, serve the app, measure the wall in Chromium."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    from bench.seed import seed
    from dashboards.app import create_app
    from dashboards.serve import launch, serve

    con = Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="cp-bench-dash-") as tmp, \
            PrivatePostgres(Path(tmp) / "pg") as pg:
        settings = Settings(database_url=pg.url, kiosk_token="bench-kiosk-token",
                            data_dir=Path(tmp))
        with con.status(f"seeding {sensors:,} sensors"), \
                psycopg.connect(pg.url, autocommit=True) as conn:
            schema.migrate(conn, settings)
            t0 = time.perf_counter()
            summary = seed(conn, settings, sensors=sensors, minutes=10, alerts=5)
            seed_s = time.perf_counter() - t0
        app = create_app(settings)
        served = serve(app)
        ctx = app.server.extensions["citypulse"]
        try:
            with sync_playwright() as pw, con.status("rendering /wall in Chromium"):
                browser = launch(pw, fast_gl=fast_gl)
                page = browser.new_page(viewport={"width": 1920, "height": 1080})
                sizes: dict[str, list[int]] = {"static": [], "refresh": []}

                def on_response(resp) -> None:
                    url = resp.url
                    if "/dash-static/" in url:
                        sizes["static"].append(len(resp.body()))
                    elif "/_dash-update-component" in url and \
                            "wall-state" in (resp.request.post_data or ""):
                        sizes["refresh"].append(len(resp.body()))

                page.on("response", on_response)
                errors: list[str] = []
                page.on("console", lambda m: m.type == "error" and errors.append(m.text))
                page.on("pageerror", lambda e: errors.append(str(e)))
                t0 = time.perf_counter()
                page.goto(f"{served.url}/kiosk?token=bench-kiosk-token")
                try:
                    page.wait_for_function("() => window.citypulse && window.citypulse.rendered"
                                           " && window.citypulse.rendered['wall-map']",
                                           timeout=180_000)
                except PlaywrightTimeout:
                    raise RuntimeError(f"the wall did not render: {errors[:5]}") from None
                first_render = time.perf_counter() - t0
                n0 = len(sizes["refresh"])
                deadline = time.monotonic() + refreshes * 6 + 30
                while len(sizes["refresh"]) < n0 + refreshes and time.monotonic() < deadline:
                    page.wait_for_timeout(500)
                browser.close()
        finally:
            served.stop()
            ctx.pool.close()
    server = ctx.timings.get("wall_refresh", [])
    refresh = sizes["refresh"][1:] or sizes["refresh"]
    return {
        "sensors": summary["sensors"],
        "seed_s": round(seed_s, 2),
        "webgl": "llvmpipe" if fast_gl else "swiftshader",
        "first_render_s": round(first_render, 2),
        "static_bytes": sum(sizes["static"]),
        "refreshes": len(refresh),
        "refresh_bytes": round(statistics.mean(refresh)) if refresh else None,
        "refresh_server_ms": round(1000 * statistics.mean(server), 1) if server else None,
        "refresh_server_ms_max": round(1000 * max(server), 1) if server else None,
    }
