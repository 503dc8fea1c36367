"""citypulse dashboards: the Dash + deck.gl web app (wall, emergency, traffic, ingest, replay).

Public entry point::

    from dashboards import create_app
    app = create_app(settings)          # dash.Dash; app.server is the Flask WSGI app
    app.run(host=settings.dashboard_host, port=settings.dashboard_port)

In: the settings (database URL, ``dashboard_secret``, ``users_file``, ``kiosk_token``).
Out: a WSGI app serving every page and asset itself (deck.gl from dashboards/assets, put
there by scripts/build-assets.sh; no CDN).  ``create_app`` raises ``AssetsMissing`` with
the fix when deck.gl is not installed.  Reads the store, the twin and analytics through
:mod:`dashboards.data` only.  Command line: ``citypulse dashboard [--host] [--port]``.
"""

from __future__ import annotations


def create_app(settings):
    """Build the dashboards app (see :func:`dashboards.app.create_app`)."""
    from dashboards.app import create_app as _create

    return _create(settings)
