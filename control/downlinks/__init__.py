"""Downlinks: commands to devices that came through a source adapter, on that source's wire.

In: a source name (``thingsboard``, ``chirpstack``; more by adding a module to :data:`BUILTIN`
that defines ``DOWNLINK``, a :class:`~control.downlinks.base.Downlink` named like its source
in :mod:`ingest.sources`).  Out: the downlink, which turns a command record and the device's
:class:`~control.downlinks.base.Route` (from ``citypulse.source_devices``, written by the
collector) into the message to publish, and the source's answers into
:class:`~control.downlinks.base.Answer` s for the worker.  Never raises on a message::

    dl = get("thingsboard")                    # KeyError naming the known downlinks
    topic, body = dl.request(record, route)
    for a in dl.answers(topic, payload): ...
"""

from __future__ import annotations

import importlib
from functools import cache

from control.downlinks.base import Answer, Downlink, Route

__all__ = ["Answer", "Downlink", "Route", "available", "get"]

BUILTIN = (
    "control.downlinks.thingsboard",
    "control.downlinks.chirpstack",
)


@cache
def _registry() -> dict[str, Downlink]:
    out: dict[str, Downlink] = {}
    for mod in BUILTIN:
        d = importlib.import_module(mod).DOWNLINK
        out[d.name] = d
    return out


def available() -> list[Downlink]:
    """Every registered downlink."""
    return list(_registry().values())


def get(name: str) -> Downlink:
    """The downlink of source ``name``; KeyError naming the known ones."""
    try:
        return _registry()[name]
    except KeyError:
        raise KeyError(f"no downlink for source {name!r}; known: {', '.join(_registry())}"
                       ) from None
