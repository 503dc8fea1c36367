"""Run the dashboards in a background thread and drive them with headless Chromium.

A test and benchmark helper only: production serves through gunicorn
(:mod:`dashboards.server`); both serve the same Flask app, so headers, CSP, sessions and
the Origin check are the same here.

Used by the browser tests and ``citypulse bench dashboard``.  ``serve(app)`` starts a
threaded WSGI server on a free loopback port and returns it (``.url``, ``.stop()``).
``launch(playwright)`` starts Debian's Chromium (never a downloaded one) with every
non-loopback request sent to a dead proxy, so nothing can leave the machine.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from werkzeug.serving import make_server

CHROMIUM = "/usr/bin/chromium"
# loopback bypasses the proxy; anything else goes to 127.0.0.1:9 and fails at once
BASE_ARGS = ["--headless", "--no-sandbox", "--proxy-server=http://127.0.0.1:9"]
FAST_GL = ["--use-gl=angle", "--use-angle=gl-egl", "--ignore-gpu-blocklist"]
SOFT_GL = ["--disable-gpu"]


@dataclass
class Served:
    """A running server: its base URL and how to stop it."""

    url: str
    server: Any
    thread: threading.Thread

    def stop(self) -> None:
        """Shut the server down and wait for its thread."""
        self.server.shutdown()
        self.thread.join(10)


def serve(app: Any, host: str = "127.0.0.1", port: int = 0) -> Served:
    """Serve a Dash app (its Flask server) from a daemon thread."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    srv = make_server(host, port, app.server, threaded=True)
    t = threading.Thread(target=srv.serve_forever, name="dashboards", daemon=True)
    t.start()
    return Served(f"http://{host}:{srv.server_port}", srv, t)


def launch(pw: Any, fast_gl: bool = True) -> Any:
    """Headless Debian Chromium through Playwright, offline except for loopback."""
    return pw.chromium.launch(executable_path=CHROMIUM,
                              args=BASE_ARGS + (FAST_GL if fast_gl else SOFT_GL))


def login(page: Any, base: str, user: str, password: str) -> None:
    """Log in through the form."""
    page.goto(base + "/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state("domcontentloaded")
